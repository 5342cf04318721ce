"""Sessions (refresh-token families) that can be revoked; removed members leave their work.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Rows a removed member made stay with the family, without their author.
AUTHORED = (("tasks", "created_by"), ("task_templates", "created_by"), ("chats", "created_by"))
SENT = ("chat_messages", "sender_id")


def _set_author_fk(table: str, column: str, *, ondelete: str, nullable: bool) -> None:
    op.drop_constraint(f"{table}_{column}_fkey", table, type_="foreignkey")
    op.alter_column(table, column, nullable=nullable)
    op.create_foreign_key(
        f"{table}_{column}_fkey", table, "users", [column], ["id"], ondelete=ondelete
    )


def upgrade() -> None:
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("refresh_generation", sa.Integer(), nullable=False, server_default="0"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("refreshed_at", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_reason", sa.Text()),
    )
    op.create_index("auth_sessions_user_idx", "auth_sessions", ["user_id"])
    for table, column in (*AUTHORED, SENT):
        _set_author_fk(table, column, ondelete="SET NULL", nullable=True)


def downgrade() -> None:
    for table, column in (*AUTHORED, SENT):
        op.execute(f"DELETE FROM {table} WHERE {column} IS NULL")
        _set_author_fk(table, column, ondelete="CASCADE", nullable=False)
    op.drop_table("auth_sessions")
