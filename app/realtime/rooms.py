"""Room names: the one place that spells them, shared by the outbox streams and Socket.IO."""

from __future__ import annotations

import uuid


def user_room(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def family_room(family_id: uuid.UUID | str) -> str:
    return f"family:{family_id}"


def chat_room(chat_id: uuid.UUID | str) -> str:
    return f"chat:{chat_id}"


def is_stream_room(room: str) -> bool:
    """Whether ``room`` carries an outbox stream (numbered events), not only ephemeral ones."""
    return room.startswith(("user:", "chat:"))
