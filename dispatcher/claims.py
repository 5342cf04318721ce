"""What the outbox's drain loop and the push sender share: who claims, and when to try again.

Both queues are claimed with fenced leases in the name of an owner unique to the process start,
and both retry a failed row with exponential backoff and full jitter.
"""

from __future__ import annotations

import os
import random
import socket
import uuid


def process_owner(*role: str) -> str:
    """A claim owner unique to this process start: host, pid, a random part, then ``role``."""
    return ":".join([socket.gethostname(), str(os.getpid()), uuid.uuid4().hex[:12], *role])


def retry_delay(attempt: int, *, base_seconds: float, max_seconds: float) -> float:
    """Seconds before a row that failed its ``attempt``-th try is due again.

    Exponential backoff with full jitter, so failing rows do not retry in lockstep.
    """
    ceiling = min(max_seconds, base_seconds * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)
