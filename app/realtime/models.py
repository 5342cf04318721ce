"""Presence's tables: the web processes (nodes) and their live sockets (app.realtime.presence)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class RealtimeNode(Base):
    """One web process; its sockets count as online until ``expires_at``."""

    __tablename__ = "realtime_nodes"
    # Presence is soft state: skip the WAL. A database crash empties the table, and every
    # node's next heartbeat finds its row gone and records its sockets again.
    __table_args__ = ({"prefixes": ["UNLOGGED"]},)

    node_id: Mapped[str] = mapped_column(Text, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    heartbeat_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PresenceSocket(Base):
    """One live Socket.IO connection, on the node that holds it."""

    __tablename__ = "presence_sockets"
    __table_args__ = (
        Index("presence_sockets_user_idx", "user_id"),
        Index("presence_sockets_node_idx", "node_id"),
        Index("presence_sockets_family_idx", "family_id"),
        {"prefixes": ["UNLOGGED"]},
    )

    sid: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    family_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("families.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(ForeignKey("realtime_nodes.node_id", ondelete="CASCADE"))
    visible: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    connected_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()")
    )
