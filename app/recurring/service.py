"""Task templates and the generation of their tasks. Services stage events and never commit."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import insert, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.families import service as family_service
from app.families.models import User
from app.pagination import Page, PageRequest, fetch_page
from app.recurring.models import TaskTemplate
from app.recurring.schemas import Schedule, TaskTemplateCreate, schedule_adapter
from app.tasks import events as task_events
from app.tasks.models import Task, task_assignees

logger = logging.getLogger(__name__)

DEFAULT_CATCH_UP_DAYS = 14


async def list_templates(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, page: PageRequest
) -> Page[TaskTemplate]:
    """A page of the family's templates, oldest first: by ``created_at``, then ``id``."""
    family_service.require_same_family(actor, family_id)
    return await fetch_page(
        session,
        select(TaskTemplate).where(TaskTemplate.family_id == family_id),
        order=(TaskTemplate.created_at, TaskTemplate.id),
        page=page,
    )


async def create_template(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, data: TaskTemplateCreate
) -> TaskTemplate:
    """A new template (parents only); its first task comes with the next generation run."""
    family_service.require_same_family(actor, family_id)
    family_service.require_parent(actor)
    assignees = await family_service.family_members_by_id(
        session=session, family_id=family_id, user_ids=data.assigned_to
    )
    template = TaskTemplate(
        family_id=family_id,
        title=data.title,
        description=data.description,
        karma_reward=data.karma_reward,
        schedule=data.schedule.model_dump(mode="json", by_alias=True),
        created_by=actor.id,
        assignees=assignees,
    )
    session.add(template)
    await session.flush()
    return template


async def delete_template(*, session: AsyncSession, actor: User, template_id: uuid.UUID) -> None:
    """Stop a template (parents only); the tasks it already generated stay."""
    template = await session.get(TaskTemplate, template_id, with_for_update=True)
    if template is None or template.family_id != actor.family_id:
        raise NotFound("task template not found")
    family_service.require_parent(actor)
    await session.delete(template)
    await session.flush()


def due_days(*, schedule: Schedule, first: date, last: date) -> list[date]:
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


async def _insert_task(
    *, session: AsyncSession, template: TaskTemplate, day: date, time_zone: tzinfo
) -> Task | None:
    """The task of ``template`` for ``day``; None when another run has already created it."""
    # Due at the end of its day, so a client can tell which day a caught-up task was for.
    due_at = datetime.combine(day + timedelta(days=1), time(), tzinfo=time_zone).astimezone(UTC)
    task_id = await session.scalar(
        pg_insert(Task)
        .values(
            id=uuid.uuid4(),
            family_id=template.family_id,
            title=template.title,
            description=template.description,
            karma_reward=template.karma_reward,
            due_at=due_at,
            created_by=template.created_by,
            template_id=template.id,
            scheduled_for=day,
        )
        .on_conflict_do_nothing(index_elements=[Task.template_id, Task.scheduled_for])
        .returning(Task.id)
    )
    if task_id is None:
        return None
    if template.assignee_ids:
        await session.execute(
            insert(task_assignees),
            [{"task_id": task_id, "user_id": user_id} for user_id in template.assignee_ids],
        )
    return await session.get_one(Task, task_id)


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
        for day in due_days(schedule=schedule, first=first, last=today):
            # The unique (template_id, scheduled_for) key is what makes this idempotent; the
            # lock above only saves the work. No insert, no event.
            task = await _insert_task(
                session=session, template=template, day=day, time_zone=time_zone
            )
            if task is not None:
                task_events.record_created(session=session, task=task)
                created.append(task)
        template.generated_through = today
    await session.flush()
    return created
