"""Delivery liveness: live dispatchers, and when a pending event started failing.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Set on an event's first failed attempt: it holds back the later events of its streams
    # only for a bounded time after that (docs/delivery.md).
    op.add_column(
        "outbox_events", sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True)
    )
    # One row per running dispatcher, for operators (`outbox workers`). Liveness itself is the
    # dispatcher's session-level advisory lock, which dies with its database session; the
    # heartbeat only shows how recently it was seen. Soft state: skip the WAL.
    op.create_table(
        "outbox_workers",
        sa.Column("owner", sa.Text(), primary_key=True),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Column(
            "heartbeat_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("outbox_workers")
    op.drop_column("outbox_events", "failing_since")
