"""This dispatcher's liveness: a lock that dies with its database session, and a heartbeat.

Claims name their owner. While a dispatcher's liveness session lives it holds a shared advisory
lock keyed by that owner name; any dispatcher that finds leases whose owner holds no such lock
(the process was killed, or its session went away with the server) expires them, so their rows
are claimed again within about one interval instead of after the whole lease. A stalled but
live owner keeps its lock and its leases: those still run out, and fencing (claim tokens) stops
it from finishing rows that were claimed again. A session that is lost takes a new owner name
with it, so leases taken under the old one can be reclaimed even though this process lives on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import psycopg

from app.outbox import queries
from app.pg_notify import with_application_name
from dispatcher.claims import process_owner

logger = logging.getLogger(__name__)

LIVENESS_LOCK_CLASS = 7_002  # the advisory-lock namespace of dispatcher liveness


def drain_session_name(pid: int | None = None) -> str:
    """The application_name of a dispatcher's drain sessions (its process id in it)."""
    return f"dispatcher:{os.getpid() if pid is None else pid}"


class Liveness:
    """Keeps this process's liveness lock and heartbeat, and expires dead owners' leases."""

    def __init__(
        self, conninfo: str, *, interval_seconds: float, stalled_transaction_seconds: float
    ) -> None:
        self.conninfo = conninfo
        self.interval_seconds = interval_seconds
        self.stalled_transaction_seconds = stalled_transaction_seconds
        # A claim owner unique to this process and liveness session.
        self.owner = process_owner()

    async def run(self) -> None:
        """Forever: (re)connect, take the lock, then beat; a lost session means a new owner."""
        while True:
            try:
                await self._live()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                logger.warning("liveness session lost", extra={"error": str(exc)})
            # Leases taken under the old owner must become reclaimable.
            self.owner = process_owner()
            await asyncio.sleep(self.interval_seconds)

    async def _cut_stalled_transactions(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # A dispatcher stopped between two messages of its pipelined delivery transaction
        # leaves its session "active", where no idle-in-transaction timeout applies; its stream
        # locks would stop every other dispatcher's delivery of those streams until it resumed.
        cur = await conn.execute(
            queries.TERMINATE_STALLED_DELIVERIES,
            {
                "own": drain_session_name(),
                "stalled_seconds": self.stalled_transaction_seconds,
            },
        )
        if cut := sum(1 for row in await cur.fetchall() if row[0]):
            logger.warning("cut off a stalled dispatcher's transaction", extra={"sessions": cut})

    async def _live(self) -> None:
        params: dict[str, Any] = {"lock_class": LIVENESS_LOCK_CLASS}
        async with await psycopg.AsyncConnection.connect(
            with_application_name(self.conninfo, f"dispatcher-liveness:{os.getpid()}"),
            autocommit=True,
            options="-c statement_timeout=10s -c lock_timeout=5s",
        ) as conn:
            owner = self.owner
            await conn.execute(queries.TAKE_LIVENESS_LOCK, {**params, "owner": owner})
            logger.info("dispatcher is live", extra={"owner": owner})
            while True:
                async with asyncio.timeout(max(10.0, 5 * self.interval_seconds)):
                    await conn.execute(
                        queries.HEARTBEAT,
                        {"owner": owner, "host": socket.gethostname(), "pid": os.getpid()},
                    )
                    cur = await conn.execute(queries.EXPIRE_DEAD_OWNERS_LEASES, params)
                    if expired := [row[0] for row in await cur.fetchall()]:
                        logger.warning(
                            "expired the leases of a dispatcher that is gone",
                            extra={"rows": len(expired), "first_event_id": min(expired)},
                        )
                    await conn.execute(queries.FORGET_DEAD_WORKERS, params)
                    await self._cut_stalled_transactions(conn)
                await asyncio.sleep(self.interval_seconds)
