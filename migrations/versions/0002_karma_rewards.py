"""Karma ledger, rewards and claims.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "karma_balances",
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        # The backstop under the row lock: no code path can leave a balance below zero.
        sa.CheckConstraint("balance >= 0", name="karma_balances_not_negative"),
    )
    op.create_table(
        "karma_ledger",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "family_id", sa.Uuid(), sa.ForeignKey("families.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("amount", sa.Integer(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("reference_id", sa.Uuid()),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("amount <> 0", name="karma_ledger_amount_not_zero"),
        sa.CheckConstraint(
            "source IN ('grant', 'task', 'claim', 'claim_refund')", name="karma_ledger_source_known"
        ),
    )
    op.create_index("karma_ledger_user_idx", "karma_ledger", ["user_id", "id"])

    op.create_table(
        "rewards",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "family_id", sa.Uuid(), sa.ForeignKey("families.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("karma_cost", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("karma_cost >= 1", name="rewards_cost_positive"),
    )
    op.create_index("ix_rewards_family_id", "rewards", ["family_id"])

    op.create_table(
        "reward_claims",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "family_id", sa.Uuid(), sa.ForeignKey("families.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "reward_id", sa.Uuid(), sa.ForeignKey("rewards.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "member_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("karma_cost", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("decided_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name="reward_claims_status_known"
        ),
    )
    op.create_index(
        "reward_claims_family_created_idx", "reward_claims", ["family_id", "created_at"]
    )
    op.create_index("ix_reward_claims_reward_id", "reward_claims", ["reward_id"])
    op.create_index("ix_reward_claims_member_id", "reward_claims", ["member_id"])

    # A claim's approval task points at its claim; the unique key also serves that lookup.
    op.add_column(
        "tasks",
        sa.Column("claim_id", sa.Uuid(), sa.ForeignKey("reward_claims.id", ondelete="CASCADE")),
    )
    op.create_unique_constraint("tasks_claim_id_key", "tasks", ["claim_id"])


def downgrade() -> None:
    op.drop_column("tasks", "claim_id")
    for table in ("reward_claims", "rewards", "karma_ledger", "karma_balances"):
        op.drop_table(table)
