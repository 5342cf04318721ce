"""Stream names: the one place that spells them.

An event is staged to streams (``app.outbox.staging.stage``), numbered per stream, and delivered
to the Socket.IO room of the same name, so the realtime side joins sockets to these names too.
"""

from __future__ import annotations

import uuid


def user_stream(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def chat_stream(chat_id: uuid.UUID | str) -> str:
    return f"chat:{chat_id}"


def is_stream(room: str) -> bool:
    """Whether the room ``room`` carries a stream (numbered events), not only ephemeral ones."""
    return room.startswith(("user:", "chat:"))
