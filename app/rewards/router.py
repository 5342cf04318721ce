"""REST endpoints for rewards and claims."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import CurrentUser
from app.db import DbSession
from app.errors import ErrorBody
from app.pagination import PAGINATED_RESPONSES, PageParams
from app.rewards import service as reward_service
from app.rewards.models import ClaimStatus
from app.rewards.schemas import ClaimOut, RewardIn, RewardOut, RewardUpdate

router = APIRouter(tags=["rewards"])


@router.get(
    "/families/{family_id}/rewards", response_model=list[RewardOut], responses=PAGINATED_RESPONSES
)
async def list_rewards(
    family_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    page: PageParams,
) -> list[RewardOut]:
    """List the family's rewards, oldest first (by `createdAt`, then `id`), a page at a time."""
    rewards = await reward_service.list_rewards(
        session=session, actor=actor, family_id=family_id, page=page
    )
    return [RewardOut.model_validate(r) for r in page.answer(rewards)]


@router.post(
    "/families/{family_id}/rewards", status_code=status.HTTP_201_CREATED, response_model=RewardOut
)
async def create_reward(
    family_id: uuid.UUID, body: RewardIn, actor: CurrentUser, session: DbSession
) -> RewardOut:
    """Offer a reward for a karma cost (parents only); the family receives `reward.created`."""
    reward = await reward_service.create_reward(
        session=session, actor=actor, family_id=family_id, data=body
    )
    return RewardOut.model_validate(reward)


@router.patch("/rewards/{reward_id}", response_model=RewardOut)
async def update_reward(
    reward_id: uuid.UUID, body: RewardUpdate, actor: CurrentUser, session: DbSession
) -> RewardOut:
    """Change a reward (parents only); the family receives `reward.updated`."""
    reward = await reward_service.update_reward(
        session=session, actor=actor, reward_id=reward_id, data=body
    )
    return RewardOut.model_validate(reward)


@router.delete(
    "/rewards/{reward_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {"model": ErrorBody, "description": "A claim on the reward is pending"}},
)
async def delete_reward(reward_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> None:
    """Withdraw a reward (parents only); the family receives `reward.deleted`.

    A pending claim refuses it (409 `reward_claim_pending`): decide the claim first.
    """
    await reward_service.delete_reward(session=session, actor=actor, reward_id=reward_id)


@router.post(
    "/rewards/{reward_id}/claim", status_code=status.HTTP_201_CREATED, response_model=ClaimOut
)
async def claim_reward(reward_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> ClaimOut:
    """Claim a reward (children only): reserves its karma and asks the parents to approve.

    The child receives `claim.created`; the parents receive `task.created` for the approval
    task. Not enough karma is a 409 `insufficient_karma`.
    """
    claim = await reward_service.claim_reward(session=session, actor=actor, reward_id=reward_id)
    return ClaimOut.model_validate(claim)


@router.get(
    "/families/{family_id}/claims", response_model=list[ClaimOut], responses=PAGINATED_RESPONSES
)
async def list_claims(
    family_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    page: PageParams,
    status_filter: Annotated[
        ClaimStatus | None, Query(alias="status", description="Only the claims in this status.")
    ] = None,
) -> list[ClaimOut]:
    """List claims: all of the family's for a parent, their own for a child, a page at a time.

    Newest first: by `createdAt` descending, then `id` descending.
    """
    claims = await reward_service.list_claims(
        session=session, actor=actor, family_id=family_id, status=status_filter, page=page
    )
    return [ClaimOut.model_validate(c) for c in page.answer(claims)]


@router.post("/claims/{claim_id}/approve", response_model=ClaimOut)
async def approve_claim(claim_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> ClaimOut:
    """Approve a pending claim (parents only); sends `claim.approved` and `task.completed`."""
    claim = await reward_service.approve_claim(session=session, actor=actor, claim_id=claim_id)
    return ClaimOut.model_validate(claim)


@router.post("/claims/{claim_id}/reject", response_model=ClaimOut)
async def reject_claim(claim_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> ClaimOut:
    """Reject a pending claim and refund its karma (parents only); sends `claim.rejected`."""
    claim = await reward_service.reject_claim(session=session, actor=actor, claim_id=claim_id)
    return ClaimOut.model_validate(claim)
