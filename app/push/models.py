"""Web Push tables: the browsers' subscriptions, and the durable queue of pushes to send."""

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
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class PushSubscription(Base):
    """One browser's push subscription (a device of a user), keyed by its endpoint."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (Index("push_subscriptions_user_idx", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The push service's capability URL for this browser: unique, so re-subscribing is an upsert.
    endpoint: Mapped[str] = mapped_column(Text, unique=True)
    # The browser's P-256 public key and 16-byte auth secret, base64url as the browser gave them.
    p256dh: Mapped[str] = mapped_column(Text)
    auth: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )


class PushDelivery(Base):
    """One notification for one subscription: pending until a push service accepts it.

    Filled by the dispatcher in the transaction that marks the outbox event delivered, drained
    by its push sender with fenced leases, like the outbox itself.
    """

    __tablename__ = "push_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'dead')", name="status_known"),
        CheckConstraint("urgency IN ('very-low', 'low', 'normal', 'high')", name="urgency_known"),
        CheckConstraint("ttl_seconds > 0", name="ttl_positive"),
        # One push per event and device, however often the event is finished (a replay).
        # Also the index behind the subscription's cascade.
        UniqueConstraint(
            "subscription_id", "event_id", name="push_deliveries_subscription_event_key"
        ),
        # The claim walks due pending rows; the partial index stays as small as the backlog.
        Index(
            "push_deliveries_due_idx",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("push_deliveries_status_created_idx", "status", "created_at"),
        {
            # A hot queue: every row is updated at claim and at finish.
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
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="CASCADE")
    )
    # No foreign key: outbox rows are purged on their own schedule.
    event_id: Mapped[int] = mapped_column(BigInteger)
    event_type: Mapped[str] = mapped_column(Text)
    # The notification the service worker shows (the envelope trimmed, at most 3 KB of JSON).
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    topic: Mapped[str | None] = mapped_column(Text)
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    urgency: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
