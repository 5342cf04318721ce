"""REST endpoints for karma."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import CurrentUser
from app.db import DbSession
from app.karma import service as karma_service
from app.karma.schemas import KarmaEntryOut, KarmaGrantIn, KarmaOut

router = APIRouter(tags=["karma"])


@router.post("/karma/grant", status_code=status.HTTP_201_CREATED, response_model=KarmaEntryOut)
async def grant_karma(body: KarmaGrantIn, actor: CurrentUser, session: DbSession) -> KarmaEntryOut:
    """Grant karma to a member of the family (parents only); they receive `karma.awarded`."""
    entry = await karma_service.grant_karma(
        session=session, actor=actor, user_id=body.user_id, amount=body.amount, reason=body.reason
    )
    return KarmaEntryOut.model_validate(entry)


@router.get("/users/{user_id}/karma", response_model=KarmaOut)
async def get_karma(
    user_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    # The ledger's ids are bigints: a larger cursor is a 422, not a database error.
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only entries older than this id")
    ] = None,
) -> KarmaOut:
    """A family member's balance and ledger history, newest first (any member of the family)."""
    balance, entries = await karma_service.get_karma(
        session=session, actor=actor, user_id=user_id, limit=limit, before=before
    )
    return KarmaOut(
        user_id=user_id,
        balance=balance,
        history=[KarmaEntryOut.model_validate(e) for e in entries],
    )
