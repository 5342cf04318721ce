"""The generation of templates' tasks: the dispatcher's recurring-task job calls
``generate_due_tasks``, the one door of this domain it uses. Each task is created, and
announced, by the tasks domain (``app.tasks.service.create_scheduled_task``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.recurring.models import TaskTemplate
from app.recurring.schemas import Schedule, schedule_adapter
from app.tasks import service as task_service
from app.tasks.models import Task

DEFAULT_CATCH_UP_DAYS = 14


def _due_days(*, schedule: Schedule, first: date, last: date) -> list[date]:
    """The days from ``first`` to ``last`` (both included) on which ``schedule`` occurs."""
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [day for day in days if schedule.occurs_on(day)]


def _first_day(
    template: TaskTemplate, *, today: date, time_zone: tzinfo, catch_up_days: int
) -> date:
    """The first day ``template`` still needs a task for, within the catch-up window."""
    # Not before the day the template was created, nor again a day already generated.
    first = max(
        template.created_at.astimezone(time_zone).date(), today - timedelta(days=catch_up_days - 1)
    )
    if template.generated_through is not None:
        first = max(first, template.generated_through + timedelta(days=1))
    return first


async def _create_task(
    *, session: AsyncSession, template: TaskTemplate, day: date, time_zone: tzinfo
) -> Task | None:
    """The task of ``template`` for ``day``; None when another run has already created it."""
    # Due at the end of its day, so a client can tell which day a caught-up task was for.
    due_at = datetime.combine(day + timedelta(days=1), time(), tzinfo=time_zone).astimezone(UTC)
    return await task_service.create_scheduled_task(
        session=session,
        template_id=template.id,
        scheduled_for=day,
        family_id=template.family_id,
        title=template.title,
        description=template.description,
        karma_reward=template.karma_reward,
        due_at=due_at,
        created_by=template.created_by,
        assignee_ids=template.assignee_ids,
    )


async def generate_due_tasks(
    *,
    session: AsyncSession,
    today: date,
    time_zone: tzinfo = UTC,
    catch_up_days: int = DEFAULT_CATCH_UP_DAYS,
) -> list[Task]:
    """Create and announce every template's tasks due up to ``today``; safe to rerun or race."""
    # ``time_zone`` decides on which day a template was created and when a task is due;
    # ``catch_up_days`` caps how many days (today included) a run looks back after downtime.
    if catch_up_days < 1:
        raise ValueError("catch_up_days must be at least 1")
    # Row locks in id order serialise concurrent generators per template without deadlocks:
    # a second run waits, then sees the first one's generated_through and skips the template.
    # They also keep a template from being deleted under a run that is inserting its tasks.
    templates = await session.scalars(
        select(TaskTemplate)
        .where(
            or_(TaskTemplate.generated_through.is_(None), TaskTemplate.generated_through < today)
        )
        .order_by(TaskTemplate.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: task FKs still share it
    )
    created: list[Task] = []
    for template in templates.all():
        schedule = schedule_adapter.validate_python(template.schedule)
        first = _first_day(template, today=today, time_zone=time_zone, catch_up_days=catch_up_days)
        for day in _due_days(schedule=schedule, first=first, last=today):
            # Idempotent per template and day: the lock above only saves the work.
            task = await _create_task(
                session=session, template=template, day=day, time_zone=time_zone
            )
            if task is not None:
                created.append(task)
        template.generated_through = today
    await session.flush()
    return created
