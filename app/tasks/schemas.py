"""Wire shapes of tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Self

from pydantic import Field, model_validator

from app.schemas import CamelModel, Moment
from app.tasks.models import Task


class TaskOut(CamelModel):
    """A task as clients see it, in REST answers and inside task events."""

    id: uuid.UUID
    family_id: uuid.UUID
    title: str
    description: str
    karma_reward: int
    due_at: datetime | None
    created_by: uuid.UUID | None
    assigned_to: list[uuid.UUID]
    completed_by: uuid.UUID | None
    completed_at: datetime | None
    created_at: datetime
    # Set on a reward claim's approval task: decide it with /v1/claims/{claimId}/approve|reject.
    claim_id: uuid.UUID | None = None

    @classmethod
    def of(cls, task: Task) -> TaskOut:
        return cls(
            id=task.id,
            family_id=task.family_id,
            title=task.title,
            description=task.description,
            karma_reward=task.karma_reward,
            due_at=task.due_at,
            created_by=task.created_by,
            assigned_to=task.assignee_ids,
            completed_by=task.completed_by,
            completed_at=task.completed_at,
            created_at=task.created_at,
            claim_id=task.claim_id,
        )


class TaskCreate(CamelModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    karma_reward: int = Field(default=0, ge=0, le=10_000)
    due_at: Moment | None = None
    assigned_to: list[uuid.UUID] = Field(default_factory=list, max_length=50)


class TaskUpdate(CamelModel):
    """A partial update: only the fields sent are changed."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    karma_reward: int | None = Field(default=None, ge=0, le=10_000)
    due_at: Moment | None = None
    assigned_to: list[uuid.UUID] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        cleared = {"title", "description", "karma_reward", "assigned_to"} & {
            name for name in self.model_fields_set if getattr(self, name) is None
        }
        if cleared:
            raise ValueError(f"cannot be null: {', '.join(sorted(cleared))}")
        return self
