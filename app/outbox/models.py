"""The outbox tables: events staged by writers, their per-stream sequence numbers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class OutboxEvent(Base):
    """One committed domain event, pending until the dispatcher has handed it to Socket.IO."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status_known"),
        # The claim query walks pending rows in id order; the partial index stays tiny.
        Index("outbox_events_pending_idx", "id", postgresql_where=text("status = 'pending'")),
        Index("outbox_events_status_created_idx", "status", "created_at"),
        Index("outbox_events_type_created_idx", "type", "created_at"),
        {
            # Claim and finish UPDATE every row twice: leave room for HOT updates and vacuum
            # the queue eagerly so dead tuples never pile up in front of the claim scan.
            "postgresql_with": {
                "fillfactor": "70",
                "autovacuum_vacuum_scale_factor": "0.01",
                "autovacuum_vacuum_threshold": "1000",
                "autovacuum_analyze_scale_factor": "0.02",
                "autovacuum_vacuum_cost_delay": "0",
            }
        },
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(SmallInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    family_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxRecipient(Base):
    """One stream (``user:<id>``, ``chat:<id>``) an event goes to, with its place in that stream."""

    __tablename__ = "outbox_recipients"
    __table_args__ = (Index("outbox_recipients_event_idx", "event_id"),)

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("outbox_events.id", ondelete="CASCADE")
    )


class StreamSequence(Base):
    """The last sequence number handed out per stream; its row lock orders writers per stream."""

    __tablename__ = "stream_sequences"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
