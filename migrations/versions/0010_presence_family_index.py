"""Presence: sockets found by family.

Every connect reads who in its family is online (the ``presence.snapshot`` a socket gets
first). With no index on ``family_id`` that read went through every live socket's row (or
every entry of the user index, filtered): a web process's connects were quadratic in its
sockets, and a replay storm after a fan-out to 10,000 took twice as long as one after 1,000.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("presence_sockets_family_idx", "presence_sockets", ["family_id"])


def downgrade() -> None:
    op.drop_index("presence_sockets_family_idx", table_name="presence_sockets")
