"""Wire shapes of rewards and claims."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from app.rewards.models import ClaimStatus
from app.schemas import CamelModel

RewardName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class RewardIn(CamelModel):
    name: RewardName
    description: str = Field(default="", max_length=2000)
    karma_cost: int = Field(ge=1, le=1_000_000)


class RewardUpdate(CamelModel):
    """A partial update: only the fields sent are changed."""

    name: RewardName | None = None
    description: str | None = Field(default=None, max_length=2000)
    karma_cost: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def not_empty(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        cleared = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if cleared:
            raise ValueError(f"cannot be null: {', '.join(cleared)}")
        return self


class RewardOut(CamelModel):
    """A reward as clients see it, in REST answers and inside claim events."""

    id: uuid.UUID
    family_id: uuid.UUID
    name: str
    description: str
    karma_cost: int
    created_by: uuid.UUID | None
    created_at: datetime


class ClaimOut(CamelModel):
    """A child's claim on a reward."""

    id: uuid.UUID
    family_id: uuid.UUID
    reward_id: uuid.UUID
    member_id: uuid.UUID
    reward: RewardOut
    karma_cost: int
    status: ClaimStatus
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    created_at: datetime
