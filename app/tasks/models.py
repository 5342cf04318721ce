"""Tasks and who they are assigned to."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.families.models import User

task_assignees = Table(
    "task_assignees",
    Base.metadata,
    Column("task_id", ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # One task per template and day, however many generators run (app.recurring).
        UniqueConstraint("template_id", "scheduled_for", name="tasks_template_day_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    karma_reward: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # None once its author was removed from the family (the row stays with the family).
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    completed_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set on a task generated from a recurring template: which template, for which day.
    # (Tables named in foreign keys are loaded by app.models, the registry.)
    template_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("task_templates.id", ondelete="SET NULL")
    )
    scheduled_for: Mapped[date | None] = mapped_column(Date)
    # Set on a reward claim's approval task, which changes only through its claim
    # (app.rewards).
    claim_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("reward_claims.id", ondelete="CASCADE"), unique=True
    )

    assignees: Mapped[list[User]] = relationship(secondary=task_assignees, lazy="selectin")

    @property
    def assignee_ids(self) -> list[uuid.UUID]:
        return [user.id for user in self.assignees]
