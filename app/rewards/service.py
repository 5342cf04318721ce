"""Reward and claim use cases. Each stages its events in the caller's transaction, never commits.

A claim reserves the child's karma at once (a ledger entry on the locked balance), so two
claims can never spend the same karma; approving makes the reservation final, rejecting
refunds it. Deciding locks the claim row, so a claim is decided exactly once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, Forbidden, NotFound
from app.families import service as family_service
from app.families.models import User
from app.karma import service as karma_service
from app.karma.models import KarmaSource
from app.pagination import Page, PageRequest, family_rows_oldest_first, fetch_page
from app.rewards import events as reward_events
from app.rewards.models import ClaimStatus, Reward, RewardClaim
from app.rewards.schemas import RewardIn, RewardUpdate
from app.tasks import service as task_service

TITLE_MAX = 200
REASON_MAX = 200


class ClaimNotPending(Conflict):
    code = "claim_not_pending"


class RewardClaimPending(Conflict):
    code = "reward_claim_pending"


async def list_rewards(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, page: PageRequest
) -> Page[Reward]:
    """A page of the family's rewards, oldest first: by ``created_at``, then ``id``."""
    family_service.require_same_family(actor, family_id)
    return await family_rows_oldest_first(session, Reward, family_id=family_id, page=page)


async def create_reward(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, data: RewardIn
) -> Reward:
    family_service.require_same_family(actor, family_id)
    family_service.require_parent(actor)
    reward = Reward(
        family_id=family_id,
        name=data.name,
        description=data.description,
        karma_cost=data.karma_cost,
        created_by=actor.id,
    )
    session.add(reward)
    await session.flush()
    await session.refresh(reward)  # created_at, which the event carries
    reward_events.record_reward_created(
        session=session, reward=reward, members=await _family_member_ids(session, family_id)
    )
    return reward


async def _family_member_ids(session: AsyncSession, family_id: uuid.UUID) -> list[uuid.UUID]:
    return await family_service.member_ids(session=session, family_id=family_id)


async def _parents_reward(session: AsyncSession, actor: User, reward_id: uuid.UUID) -> Reward:
    """A reward of the actor's family, locked, for a parent to change."""
    reward = await session.get(Reward, reward_id, with_for_update=True, populate_existing=True)
    if reward is None or reward.family_id != actor.family_id:
        raise NotFound("reward not found")
    family_service.require_parent(actor)
    return reward


async def update_reward(
    *, session: AsyncSession, actor: User, reward_id: uuid.UUID, data: RewardUpdate
) -> Reward:
    """Change a reward (parents only); pending claims keep the cost they reserved."""
    reward = await _parents_reward(session, actor, reward_id)
    for field in data.model_fields_set:
        setattr(reward, field, getattr(data, field))
    await session.flush()
    reward_events.record_reward_updated(
        session=session, reward=reward, members=await _family_member_ids(session, reward.family_id)
    )
    return reward


async def delete_reward(*, session: AsyncSession, actor: User, reward_id: uuid.UUID) -> None:
    """Withdraw a reward (parents only), with its decided claims; a pending claim refuses it.

    A pending claim holds the child's reserved karma: it is decided (refunded or spent) first.
    """
    reward = await _parents_reward(session, actor, reward_id)
    # A claim made meanwhile waits for the reward's row lock taken above.
    pending = await session.scalar(
        select(RewardClaim.id)
        .where(RewardClaim.reward_id == reward.id, RewardClaim.status == ClaimStatus.PENDING)
        .limit(1)
    )
    if pending is not None:
        raise RewardClaimPending(
            "a claim on this reward is pending: approve or reject it first",
            details={"claimId": str(pending)},
        )
    reward_events.record_reward_deleted(
        session=session, reward=reward, members=await _family_member_ids(session, reward.family_id)
    )
    await session.delete(reward)
    await session.flush()


async def claim_reward(*, session: AsyncSession, actor: User, reward_id: uuid.UUID) -> RewardClaim:
    """A child claims a reward: reserve its karma, open the claim and the parents' approval task."""
    # FOR KEY SHARE: a deletion of the reward (FOR UPDATE) waits for the claim or goes first.
    reward = await session.get(Reward, reward_id, with_for_update={"read": True, "key_share": True})
    if reward is None or reward.family_id != actor.family_id:
        raise NotFound("reward not found")
    if actor.is_parent:
        raise Forbidden("only children may claim rewards")
    claim_id = uuid.uuid4()
    # Raises InsufficientKarma before anything is written; the balance row stays locked until
    # commit, so a concurrent claim by the same child waits and then sees what is left.
    reservation = await karma_service.spend(
        session=session,
        user_id=actor.id,
        family_id=actor.family_id,
        amount=reward.karma_cost,
        source=KarmaSource.CLAIM,
        reason=f"Claimed reward: {reward.name}"[:REASON_MAX],
        reference_id=claim_id,
        created_by=actor.id,
    )
    claim = RewardClaim(
        id=claim_id,
        family_id=actor.family_id,
        reward=reward,
        member_id=actor.id,
        karma_cost=reward.karma_cost,
        status=ClaimStatus.PENDING,
    )
    session.add(claim)
    await session.flush()
    parents = await family_service.parent_ids(session=session, family_id=actor.family_id)
    task = await task_service.create_approval_task(
        session=session,
        family_id=actor.family_id,
        claim_id=claim.id,
        title=f"Approve reward: {reward.name} for {actor.display_name}"[:TITLE_MAX],
        description=f"{actor.display_name} claimed {reward.name} for {reward.karma_cost} karma.",
        assignee_ids=parents,
        created_by=actor.id,
    )
    reward_events.record_created(
        session=session,
        claim=claim,
        new_balance=reservation.balance_after,
        approval_task_id=task.id,
    )
    return claim


async def list_claims(
    *,
    session: AsyncSession,
    actor: User,
    family_id: uuid.UUID,
    status: ClaimStatus | None,
    page: PageRequest,
) -> Page[RewardClaim]:
    """The family's claims for a parent; a child's own claims for a child.

    Newest first: by ``created_at`` descending, then ``id`` descending.
    """
    family_service.require_same_family(actor, family_id)
    query = select(RewardClaim).where(RewardClaim.family_id == family_id)
    if not actor.is_parent:
        query = query.where(RewardClaim.member_id == actor.id)
    if status is not None:
        query = query.where(RewardClaim.status == status)
    return await fetch_page(
        session, query, order=(RewardClaim.created_at, RewardClaim.id), page=page, descending=True
    )


async def _decide(
    *, session: AsyncSession, actor: User, claim_id: uuid.UUID, status: ClaimStatus
) -> RewardClaim:
    """Lock a pending claim of the actor's family and mark it decided, with its approval task."""
    claim = await session.get(RewardClaim, claim_id, with_for_update=True, populate_existing=True)
    if claim is None or claim.family_id != actor.family_id:
        raise NotFound("claim not found")
    family_service.require_parent(actor)
    if claim.status != ClaimStatus.PENDING:
        raise ClaimNotPending(
            f"the claim is already {claim.status}", details={"status": claim.status}
        )
    claim.status = status
    claim.decided_by = actor.id
    claim.decided_at = datetime.now(UTC)
    await session.flush()
    await task_service.complete_approval_task(
        session=session, claim_id=claim.id, completed_by=actor.id
    )
    return claim


async def approve_claim(*, session: AsyncSession, actor: User, claim_id: uuid.UUID) -> RewardClaim:
    """A parent approves a pending claim: the reserved karma stays spent."""
    claim = await _decide(
        session=session, actor=actor, claim_id=claim_id, status=ClaimStatus.APPROVED
    )
    reward_events.record_approved(session=session, claim=claim)
    return claim


async def reject_claim(*, session: AsyncSession, actor: User, claim_id: uuid.UUID) -> RewardClaim:
    """A parent rejects a pending claim: the reserved karma goes back to the child."""
    claim = await _decide(
        session=session, actor=actor, claim_id=claim_id, status=ClaimStatus.REJECTED
    )
    refund = await karma_service.credit(
        session=session,
        user_id=claim.member_id,
        family_id=claim.family_id,
        amount=claim.karma_cost,
        source=KarmaSource.CLAIM_REFUND,
        reason=f"Claim rejected: {claim.reward.name}"[:REASON_MAX],
        reference_id=claim.id,
        created_by=actor.id,
    )
    reward_events.record_rejected(session=session, claim=claim, new_balance=refund.balance_after)
    return claim
