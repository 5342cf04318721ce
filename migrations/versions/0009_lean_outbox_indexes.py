"""Outbox indexes the delivery path uses, and no others.

Every event is inserted into, then marked delivered in, the indexes of ``outbox_events`` whose
predicate it meets (the mark changes ``status``, so it is never a HOT update). The
``(type, created_at)`` index served only operators' ``--type`` filter, which may scan;
``(status, created_at)`` served the dead-row count and the retention purge, which partial
indexes serve instead: of the few dead rows, and of the delivered rows by ``delivered_at``
(the purge's own order). Index entries written per delivered event: 7 before, 4 now.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "outbox_events_dead_idx",
        "outbox_events",
        ["id"],
        postgresql_where=sa.text("status = 'dead'"),
    )
    op.create_index(
        "outbox_events_delivered_idx",
        "outbox_events",
        ["delivered_at"],
        postgresql_where=sa.text("status = 'delivered'"),
    )
    op.drop_index("outbox_events_type_created_idx", table_name="outbox_events")
    op.drop_index("outbox_events_status_created_idx", table_name="outbox_events")


def downgrade() -> None:
    op.create_index("outbox_events_status_created_idx", "outbox_events", ["status", "created_at"])
    op.create_index("outbox_events_type_created_idx", "outbox_events", ["type", "created_at"])
    op.drop_index("outbox_events_delivered_idx", table_name="outbox_events")
    op.drop_index("outbox_events_dead_idx", table_name="outbox_events")
