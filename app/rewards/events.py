"""Reward and claim events: typed payloads (the seed's contracts) and their recipients, staged
in the outbox.

Reward events go to every member of the family (everyone sees the rewards list). Every claim
event goes to the claiming child only; the parents learn of a claim through its approval task
(``task.created``, then ``task.completed`` when it is decided).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox.staging import EventPayload, stage
from app.outbox.streams import user_stream
from app.push.notifications import Notification, push_notification
from app.rewards.models import ClaimStatus, Reward, RewardClaim
from app.rewards.schemas import RewardOut


class RewardCreated(EventPayload):
    """A parent offered a new reward."""

    event_type = "reward.created"
    audience = "every member of the family"
    reward_id: uuid.UUID
    reward: RewardOut


class RewardUpdated(EventPayload):
    """A parent changed a reward's name, description or cost."""

    event_type = "reward.updated"
    audience = "every member of the family"
    reward_id: uuid.UUID
    reward: RewardOut


class RewardDeleted(EventPayload):
    """A parent withdrew a reward (its decided claims went with it)."""

    event_type = "reward.deleted"
    audience = "every member of the family"
    reward_id: uuid.UUID
    family_id: uuid.UUID


class ClaimFacts(EventPayload):
    """What every claim event says about the claim (not an event type itself)."""

    claim_id: uuid.UUID
    reward_id: uuid.UUID
    member_id: uuid.UUID
    reward: RewardOut
    status: ClaimStatus
    karma_cost: int


class ClaimCreated(ClaimFacts):
    """A child claimed a reward; its karma is reserved until a parent decides."""

    event_type = "claim.created"
    audience = "the claiming child (the parents get the approval task's task.created)"
    new_balance: int
    approval_task_id: uuid.UUID
    created_at: datetime


class ClaimDecision(ClaimFacts):
    """A parent's decision on a claim (not an event type itself)."""

    decided_by: uuid.UUID
    decided_at: datetime


class ClaimApproved(ClaimDecision):
    """A parent approved a claim: the reserved karma is spent."""

    event_type = "claim.approved"
    audience = "the claiming child"


class ClaimRejected(ClaimDecision):
    """A parent rejected a claim: the reserved karma went back to the child."""

    event_type = "claim.rejected"
    audience = "the claiming child"
    refunded_karma: int
    new_balance: int


# Pushes (app.push): a decision reaches the child; ``claim.created`` does not push, the child
# made the claim in the app.
@push_notification(ClaimApproved, ttl=timedelta(days=7))
def _approved_notification(event: ClaimApproved) -> Notification:
    return Notification(
        title="Reward approved",
        body=event.reward.name,
        about=f"claim:{event.claim_id}",
        url=f"/#claims/{event.claim_id}",
        skip_users=frozenset({event.decided_by}),
    )


@push_notification(ClaimRejected, ttl=timedelta(days=7))
def _rejected_notification(event: ClaimRejected) -> Notification:
    return Notification(
        title="Reward not approved",
        body=f"{event.reward.name}: {event.refunded_karma} karma returned",
        about=f"claim:{event.claim_id}",
        url=f"/#claims/{event.claim_id}",
        skip_users=frozenset({event.decided_by}),
    )


def _record_to_family(
    session: AsyncSession, payload: EventPayload, reward: Reward, members: Iterable[uuid.UUID]
) -> None:
    stage(session, payload, streams=[user_stream(m) for m in members], family_id=reward.family_id)


def record_reward_created(
    *, session: AsyncSession, reward: Reward, members: Iterable[uuid.UUID]
) -> None:
    payload = RewardCreated(reward_id=reward.id, reward=RewardOut.model_validate(reward))
    _record_to_family(session, payload, reward, members)


def record_reward_updated(
    *, session: AsyncSession, reward: Reward, members: Iterable[uuid.UUID]
) -> None:
    payload = RewardUpdated(reward_id=reward.id, reward=RewardOut.model_validate(reward))
    _record_to_family(session, payload, reward, members)


def record_reward_deleted(
    *, session: AsyncSession, reward: Reward, members: Iterable[uuid.UUID]
) -> None:
    payload = RewardDeleted(reward_id=reward.id, family_id=reward.family_id)
    _record_to_family(session, payload, reward, members)


def _record(session: AsyncSession, payload: EventPayload, claim: RewardClaim) -> None:
    stage(session, payload, streams=[user_stream(claim.member_id)], family_id=claim.family_id)


def _facts(claim: RewardClaim) -> dict[str, Any]:
    """The fields of ClaimFacts, which every claim event carries."""
    return {
        "claim_id": claim.id,
        "reward_id": claim.reward_id,
        "member_id": claim.member_id,
        "reward": RewardOut.model_validate(claim.reward),
        "status": claim.status,
        "karma_cost": claim.karma_cost,
    }


def record_created(
    *, session: AsyncSession, claim: RewardClaim, new_balance: int, approval_task_id: uuid.UUID
) -> None:
    payload = ClaimCreated(
        **_facts(claim),
        new_balance=new_balance,
        approval_task_id=approval_task_id,
        created_at=claim.created_at,
    )
    _record(session, payload, claim)


def _decision(claim: RewardClaim) -> tuple[uuid.UUID, datetime]:
    # Only a decided claim is announced as approved or rejected.
    assert claim.decided_by is not None
    assert claim.decided_at is not None
    return claim.decided_by, claim.decided_at


def record_approved(*, session: AsyncSession, claim: RewardClaim) -> None:
    decided_by, decided_at = _decision(claim)
    payload = ClaimApproved(
        **_facts(claim),
        decided_by=decided_by,
        decided_at=decided_at,
    )
    _record(session, payload, claim)


def record_rejected(*, session: AsyncSession, claim: RewardClaim, new_balance: int) -> None:
    decided_by, decided_at = _decision(claim)
    payload = ClaimRejected(
        **_facts(claim),
        decided_by=decided_by,
        decided_at=decided_at,
        refunded_karma=claim.karma_cost,
        new_balance=new_balance,
    )
    _record(session, payload, claim)
