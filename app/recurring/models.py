"""Task templates: what to create, for whom, and on which days."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.families.models import User

task_template_assignees = Table(
    "task_template_assignees",
    Base.metadata,
    Column("template_id", ForeignKey("task_templates.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class TaskTemplate(Base):
    """A recurring task; the dispatcher creates one task from it on each scheduled day."""

    __tablename__ = "task_templates"
    __table_args__ = (
        CheckConstraint(
            "schedule ->> 'kind' IN ('weekdays', 'every_n_days')", name="schedule_kind_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    family_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("families.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    karma_reward: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The API's schedule object as validated by app.recurring.schemas.Schedule: new kinds of
    # schedule need no migration.
    schedule: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # None once its author was removed from the family (the row stays with the family).
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The last day whose task was generated. Kept here, not derived from the tasks, so that a
    # generated task a parent deleted is not created again by the next run.
    generated_through: Mapped[date | None] = mapped_column(Date)

    assignees: Mapped[list[User]] = relationship(secondary=task_template_assignees, lazy="selectin")

    @property
    def assignee_ids(self) -> list[uuid.UUID]:
        return [user.id for user in self.assignees]
