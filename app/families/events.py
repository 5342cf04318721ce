"""Family membership events."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.families.models import User
from app.families.schemas import MemberOut
from app.outbox.staging import EventPayload, stage
from app.outbox.streams import user_stream


class MemberAdded(EventPayload):
    """A parent added a member to the family."""

    event_type = "member.added"
    audience = "the family's other members (the new one loads the family when it logs in)"
    user_id: uuid.UUID
    family_id: uuid.UUID
    member: MemberOut


class MemberRemoved(EventPayload):
    """A parent removed a member from the family; what they made stays, without an author."""

    event_type = "member.removed"
    audience = "every remaining member of the family"
    user_id: uuid.UUID
    family_id: uuid.UUID


def record_removed(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    remaining: list[uuid.UUID],
) -> None:
    payload = MemberRemoved(user_id=user_id, family_id=family_id)
    stage(session, payload, streams=[user_stream(m) for m in remaining], family_id=family_id)


def record_added(*, session: AsyncSession, member: User, members: list[uuid.UUID]) -> None:
    payload = MemberAdded(
        user_id=member.id, family_id=member.family_id, member=MemberOut.model_validate(member)
    )
    stage(session, payload, streams=[user_stream(m) for m in members], family_id=member.family_id)
