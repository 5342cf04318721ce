"""Karma use cases: grants, task rewards, spends and refunds on a locked per-member balance.

Every change appends a signed ledger entry and moves the member's balance row in the caller's
transaction. Credits are one upsert (which row-locks the balance until commit); spends lock the
balance row with ``SELECT … FOR UPDATE`` first, so concurrent spends of one member queue up and
each sees the balance the previous one left.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, NotFound
from app.families import service as family_service
from app.families.models import User
from app.karma import events as karma_events
from app.karma.models import KarmaBalance, KarmaEntry, KarmaSource


class InsufficientKarma(Conflict):
    code = "insufficient_karma"


async def _append_entry(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    amount: int,
    balance_after: int,
    source: KarmaSource,
    reason: str,
    reference_id: uuid.UUID | None,
    created_by: uuid.UUID | None,
) -> KarmaEntry:
    entry = KarmaEntry(
        user_id=user_id,
        family_id=family_id,
        amount=amount,
        balance_after=balance_after,
        source=source,
        reason=reason,
        reference_id=reference_id,
        created_by=created_by,
    )
    session.add(entry)
    await session.flush()
    await session.refresh(entry, ["created_at"])
    return entry


async def credit(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    amount: int,
    source: KarmaSource,
    reason: str,
    reference_id: uuid.UUID | None = None,
    created_by: uuid.UUID | None = None,
) -> KarmaEntry:
    """Add ``amount`` to the member's balance and record it; returns the ledger entry."""
    upsert = insert(KarmaBalance).values(user_id=user_id, balance=amount)
    new_balance = await session.scalar(
        upsert.on_conflict_do_update(
            index_elements=[KarmaBalance.user_id],
            set_={
                "balance": KarmaBalance.balance + upsert.excluded.balance,
                "updated_at": func.now(),
            },
        ).returning(KarmaBalance.balance)
    )
    assert new_balance is not None
    return await _append_entry(
        session=session,
        user_id=user_id,
        family_id=family_id,
        amount=amount,
        balance_after=new_balance,
        source=source,
        reason=reason,
        reference_id=reference_id,
        created_by=created_by,
    )


async def spend(
    *,
    session: AsyncSession,
    user_id: uuid.UUID,
    family_id: uuid.UUID,
    amount: int,
    source: KarmaSource,
    reason: str,
    reference_id: uuid.UUID | None = None,
    created_by: uuid.UUID | None = None,
) -> KarmaEntry:
    """Take ``amount`` from the member's locked balance; InsufficientKarma if it is short."""
    balance = await session.scalar(
        select(KarmaBalance)
        .where(KarmaBalance.user_id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    available = balance.balance if balance is not None else 0
    if balance is None or available < amount:
        raise InsufficientKarma(
            "not enough karma", details={"balance": available, "required": amount}
        )
    balance.balance = available - amount
    return await _append_entry(
        session=session,
        user_id=user_id,
        family_id=family_id,
        amount=-amount,
        balance_after=balance.balance,
        source=source,
        reason=reason,
        reference_id=reference_id,
        created_by=created_by,
    )


async def grant_karma(
    *, session: AsyncSession, actor: User, user_id: uuid.UUID, amount: int, reason: str
) -> KarmaEntry:
    """A parent grants karma to a member of their family; stages ``karma.awarded``."""
    family_service.require_parent(actor)
    await family_service.family_members_by_id(
        session=session, family_id=actor.family_id, user_ids=[user_id]
    )
    entry = await credit(
        session=session,
        user_id=user_id,
        family_id=actor.family_id,
        amount=amount,
        source=KarmaSource.GRANT,
        reason=reason,
        created_by=actor.id,
    )
    karma_events.record_awarded(session=session, entry=entry, granted_by=actor.id)
    return entry


async def award_task_karma(
    *,
    session: AsyncSession,
    family_id: uuid.UUID,
    user_ids: Iterable[uuid.UUID],
    amount: int,
    reason: str,
    task_id: uuid.UUID,
    granted_by: uuid.UUID | None,
) -> list[KarmaEntry]:
    """Credit a completed task's reward to each of ``user_ids``; stages ``karma.awarded`` each."""
    entries = []
    # A fixed order of balance-row locks, so two transactions crediting overlapping members
    # cannot deadlock.
    for user_id in sorted(set(user_ids)):
        entry = await credit(
            session=session,
            user_id=user_id,
            family_id=family_id,
            amount=amount,
            source=KarmaSource.TASK,
            reason=reason,
            reference_id=task_id,
            created_by=granted_by,
        )
        karma_events.record_awarded(session=session, entry=entry, granted_by=granted_by)
        entries.append(entry)
    return entries


async def get_karma(
    *,
    session: AsyncSession,
    actor: User,
    user_id: uuid.UUID,
    limit: int,
    before: int | None = None,
) -> tuple[int, list[KarmaEntry]]:
    """A family member's balance and up to ``limit`` ledger entries older than ``before``."""
    member = await session.get(User, user_id)
    if member is None or member.family_id != actor.family_id:
        raise NotFound("user not found")
    balance = await session.scalar(
        select(KarmaBalance.balance).where(KarmaBalance.user_id == user_id)
    )
    query = select(KarmaEntry).where(KarmaEntry.user_id == user_id)
    if before is not None:
        query = query.where(KarmaEntry.id < before)
    entries = await session.scalars(query.order_by(KarmaEntry.id.desc()).limit(limit))
    return balance or 0, list(entries)
