"""Wire shapes of task templates and their schedules."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, field_validator

from app.recurring.models import TaskTemplate
from app.schemas import CamelModel

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEK: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class WeekdaysSchedule(CamelModel):
    """On the named days of every week."""

    kind: Literal["weekdays"]
    days: list[Weekday] = Field(min_length=1, max_length=7)

    @field_validator("days")
    @classmethod
    def distinct_in_week_order(cls, days: list[Weekday]) -> list[Weekday]:
        if len(set(days)) != len(days):
            raise ValueError("each day may be named once")
        return sorted(days, key=WEEK.index)

    def occurs_on(self, day: date) -> bool:
        return WEEK[day.weekday()] in self.days


class EveryNDaysSchedule(CamelModel):
    """On ``startDate`` and every ``n`` days after it."""

    kind: Literal["every_n_days"]
    n: int = Field(ge=1, le=366, strict=True)
    start_date: date

    def occurs_on(self, day: date) -> bool:
        return day >= self.start_date and (day - self.start_date).days % self.n == 0


Schedule = Annotated[WeekdaysSchedule | EveryNDaysSchedule, Field(discriminator="kind")]
schedule_adapter: TypeAdapter[Schedule] = TypeAdapter(Schedule)


class TaskTemplateCreate(CamelModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    karma_reward: int = Field(default=0, ge=0, le=10_000, strict=True)
    # A recurring chore for nobody is a mistake, not a template.
    assigned_to: list[uuid.UUID] = Field(min_length=1, max_length=50)
    schedule: Schedule

    @field_validator("assigned_to")
    @classmethod
    def distinct_assignees(cls, user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(user_ids)) != len(user_ids):
            raise ValueError("each assignee may be named once")
        return user_ids


class TaskTemplateOut(CamelModel):
    """A task template as clients see it."""

    id: uuid.UUID
    family_id: uuid.UUID
    title: str
    description: str
    karma_reward: int
    assigned_to: list[uuid.UUID]
    schedule: Schedule
    created_by: uuid.UUID | None
    created_at: datetime
    generated_through: date | None

    @classmethod
    def of(cls, template: TaskTemplate) -> TaskTemplateOut:
        return cls(
            id=template.id,
            family_id=template.family_id,
            title=template.title,
            description=template.description,
            karma_reward=template.karma_reward,
            assigned_to=template.assignee_ids,
            schedule=schedule_adapter.validate_python(template.schedule),
            created_by=template.created_by,
            created_at=template.created_at,
            generated_through=template.generated_through,
        )
