"""Wire shapes of rewards and claims."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from app.rewards.models import ClaimStatus
from app.schemas import CamelModel

RewardName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class RewardIn(CamelModel):
    name: RewardName
    description: str = Field(default="", max_length=2000)
    karma_cost: int = Field(ge=1, le=1_000_000)


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
