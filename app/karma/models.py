"""Karma: an append-only ledger of signed entries, and one balance row per member."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Uuid,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class KarmaSource(StrEnum):
    """Why a ledger entry exists; ``reference_id`` names the task or claim behind it."""

    GRANT = "grant"  # a parent's manual grant
    TASK = "task"  # the karma reward of a completed task
    CLAIM = "claim"  # karma reserved by a reward claim (negative)
    CLAIM_REFUND = "claim_refund"  # a rejected claim gives its karma back


class KarmaBalance(Base):
    """A member's current balance: the row a spend locks to serialise concurrent spends."""

    __tablename__ = "karma_balances"
    __table_args__ = (CheckConstraint("balance >= 0", name="karma_balances_not_negative"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # 64 bits: however many grants pile up, a balance never overflows into a 500.
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class KarmaEntry(Base):
    """One signed change of a member's balance."""

    __tablename__ = "karma_ledger"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="karma_ledger_amount_not_zero"),
        CheckConstraint(
            "source IN ('grant', 'task', 'claim', 'claim_refund')", name="karma_ledger_source_known"
        ),
        # A member's history, newest first, pages on this index.
        Index("karma_ledger_user_idx", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[KarmaSource] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(200))
    # The task or claim behind the entry; no foreign key, as it names rows of either table.
    reference_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
