"""Session events: a user's devices learn that some of their sessions ended."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox.staging import EventPayload, stage
from app.outbox.streams import user_stream

RevokeReason = Literal[
    "logout", "logout_everywhere", "password_changed", "refresh_token_reused", "member_removed"
]


class SessionRevoked(EventPayload):
    """Sessions of the user ended; their sockets are closed and their tokens refused."""

    event_type = "session.revoked"
    audience = "the user whose sessions ended (each device checks whether its own is listed)"
    reason: RevokeReason
    session_ids: list[uuid.UUID]


def record_revoked(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    session_ids: list[uuid.UUID],
    reason: RevokeReason,
) -> None:
    payload = SessionRevoked(reason=reason, session_ids=session_ids)
    stage(session, payload, streams=[user_stream(user_id)], family_id=family_id)
