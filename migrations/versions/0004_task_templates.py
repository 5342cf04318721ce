"""Recurring task templates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_templates",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "family_id", sa.Uuid(), sa.ForeignKey("families.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("karma_reward", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("schedule", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("generated_through", sa.Date()),
        sa.CheckConstraint(
            "schedule ->> 'kind' IN ('weekdays', 'every_n_days')", name="schedule_kind_known"
        ),
    )
    op.create_index("ix_task_templates_family_id", "task_templates", ["family_id"])
    op.create_table(
        "task_template_assignees",
        sa.Column(
            "template_id",
            sa.Uuid(),
            sa.ForeignKey("task_templates.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_index("ix_task_template_assignees_user_id", "task_template_assignees", ["user_id"])

    op.add_column("tasks", sa.Column("template_id", sa.Uuid()))
    op.add_column("tasks", sa.Column("scheduled_for", sa.Date()))
    op.create_foreign_key(
        "tasks_template_id_fkey",
        "tasks",
        "task_templates",
        ["template_id"],
        ["id"],
        ondelete="SET NULL",
    )
    # The generators' idempotency key: INSERT … ON CONFLICT DO NOTHING relies on it. Ordinary
    # tasks (both columns NULL) never conflict, NULLs being distinct.
    op.create_unique_constraint("tasks_template_day_key", "tasks", ["template_id", "scheduled_for"])


def downgrade() -> None:
    op.drop_constraint("tasks_template_day_key", "tasks", type_="unique")
    op.drop_constraint("tasks_template_id_fkey", "tasks", type_="foreignkey")
    op.drop_column("tasks", "scheduled_for")
    op.drop_column("tasks", "template_id")
    op.drop_table("task_template_assignees")
    op.drop_table("task_templates")
