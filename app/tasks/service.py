"""Task use cases. Each stages its event in the caller's transaction and never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, Forbidden, NotFound
from app.families import service as family_service
from app.families.models import User
from app.karma import service as karma_service
from app.pagination import Page, PageRequest, family_rows_oldest_first
from app.tasks import events as task_events
from app.tasks.models import Task, task_assignees
from app.tasks.schemas import TaskCreate, TaskUpdate

_TASKS = cast(Table, Task.__table__)


async def get_task(*, session: AsyncSession, actor: User, task_id: uuid.UUID) -> Task:
    """The task, locked for update; another family's task is NotFound."""
    task = await session.get(Task, task_id, with_for_update=True)
    if task is None or task.family_id != actor.family_id:
        raise NotFound("task not found")
    return task


def refuse_approval_task(task: Task) -> None:
    """A claim's approval task changes only by approving or rejecting the claim (app.rewards)."""
    if task.claim_id is not None:
        raise Conflict(
            "this task approves a reward claim: approve or reject the claim instead",
            details={"claimId": str(task.claim_id)},
        )


async def list_tasks(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, page: PageRequest
) -> Page[Task]:
    """A page of the family's tasks, oldest first: by ``created_at``, then ``id``."""
    family_service.require_same_family(actor, family_id)
    return await family_rows_oldest_first(session, Task, family_id=family_id, page=page)


async def create_task(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, data: TaskCreate
) -> Task:
    family_service.require_same_family(actor, family_id)
    family_service.require_parent(actor)
    assignees = await family_service.family_members_by_id(
        session=session, family_id=family_id, user_ids=data.assigned_to
    )
    # Two plain INSERTs, not the unit of work's flush (the costliest part of a REST task
    # creation in the web process's profile, docs/profiles.md): the same rows, the same round
    # trips. The task returned is not attached to the session: it is what was written, for
    # the event and the answer.
    values = {
        "id": uuid.uuid4(),
        "family_id": family_id,
        "title": data.title,
        "description": data.description,
        "karma_reward": data.karma_reward,
        "due_at": data.due_at,
        "created_by": actor.id,
    }
    task = Task(**values, assignees=assignees)
    written = await session.execute(insert(_TASKS).values(**values).returning(_TASKS.c.created_at))
    task.created_at = written.scalar_one()
    if assignees:
        await session.execute(
            insert(task_assignees), [{"task_id": task.id, "user_id": u.id} for u in assignees]
        )
    task_events.record_created(session=session, task=task)
    return task


async def create_scheduled_task(
    *,
    session: AsyncSession,
    template_id: uuid.UUID,
    scheduled_for: date,
    family_id: uuid.UUID,
    title: str,
    description: str,
    karma_reward: int,
    due_at: datetime,
    created_by: uuid.UUID | None,
    assignee_ids: Sequence[uuid.UUID],
) -> Task | None:
    """A recurring template's task for one day, staging `task.created`; idempotent.

    None, and no event, when the template's task for that day exists already (an earlier or a
    concurrent run of the generator, app.recurring.generation, created it).
    """
    # The unique (template_id, scheduled_for) key is what makes this idempotent.
    task_id = await session.scalar(
        pg_insert(Task)
        .values(
            id=uuid.uuid4(),
            family_id=family_id,
            title=title,
            description=description,
            karma_reward=karma_reward,
            due_at=due_at,
            created_by=created_by,
            template_id=template_id,
            scheduled_for=scheduled_for,
        )
        .on_conflict_do_nothing(index_elements=[Task.template_id, Task.scheduled_for])
        .returning(Task.id)
    )
    if task_id is None:
        return None
    if assignee_ids:
        await session.execute(
            insert(task_assignees),
            [{"task_id": task_id, "user_id": user_id} for user_id in assignee_ids],
        )
    task = await session.get_one(Task, task_id)
    task_events.record_created(session=session, task=task)
    return task


async def update_task(
    *, session: AsyncSession, actor: User, task_id: uuid.UUID, data: TaskUpdate
) -> Task:
    family_service.require_parent(actor)
    task = await get_task(session=session, actor=actor, task_id=task_id)
    refuse_approval_task(task)
    for field in ("title", "description", "karma_reward", "due_at"):
        if field in data.model_fields_set:
            setattr(task, field, getattr(data, field))
    if data.assigned_to is not None:
        before = set(task.assignee_ids)
        task.assignees = await family_service.family_members_by_id(
            session=session, family_id=task.family_id, user_ids=data.assigned_to
        )
        if set(task.assignee_ids) != before:
            removed = before - set(task.assignee_ids)
            task_events.record_assigned(session=session, task=task, removed=sorted(removed))
    await session.flush()
    return task


async def complete_task(*, session: AsyncSession, actor: User, task_id: uuid.UUID) -> Task:
    task = await get_task(session=session, actor=actor, task_id=task_id)
    if not actor.is_parent and actor.id not in task.assignee_ids:
        raise Forbidden("only the task's assignees or a parent may complete it")
    if task.completed_at is not None:
        raise Conflict("the task is already completed")
    refuse_approval_task(task)
    await _mark_completed(session=session, task=task, completed_by=actor.id)
    if task.karma_reward > 0:
        # Same transaction: the reward is credited exactly when the completion commits.
        await karma_service.award_task_karma(
            session=session,
            family_id=task.family_id,
            user_ids=task.assignee_ids,
            amount=task.karma_reward,
            reason=task.title,
            task_id=task.id,
            granted_by=task.created_by,
        )
    return task


async def _mark_completed(*, session: AsyncSession, task: Task, completed_by: uuid.UUID) -> None:
    task.completed_by = completed_by
    task.completed_at = datetime.now(UTC)
    await session.flush()
    parents = await family_service.parent_ids(session=session, family_id=task.family_id)
    task_events.record_completed(
        session=session, task=task, completed_by=completed_by, parents=parents
    )


async def create_approval_task(
    *,
    session: AsyncSession,
    family_id: uuid.UUID,
    claim_id: uuid.UUID,
    title: str,
    description: str,
    assignee_ids: list[uuid.UUID],
    created_by: uuid.UUID,
) -> Task:
    """The parents' task to approve a reward claim; its assignees receive `task.created`."""
    assignees = await family_service.family_members_by_id(
        session=session, family_id=family_id, user_ids=assignee_ids
    )
    task = Task(
        family_id=family_id,
        title=title,
        description=description,
        karma_reward=0,
        created_by=created_by,
        assignees=assignees,
        claim_id=claim_id,
    )
    session.add(task)
    await session.flush()
    task_events.record_created(session=session, task=task)
    return task


async def complete_approval_task(
    *, session: AsyncSession, claim_id: uuid.UUID, completed_by: uuid.UUID
) -> Task | None:
    """Close a decided claim's approval task, if still open; stages `task.completed`."""
    task = await session.scalar(
        select(Task).where(Task.claim_id == claim_id).with_for_update(of=Task)
    )
    if task is None or task.completed_at is not None:
        return task
    await _mark_completed(session=session, task=task, completed_by=completed_by)
    return task


async def delete_task(*, session: AsyncSession, actor: User, task_id: uuid.UUID) -> None:
    family_service.require_parent(actor)
    task = await get_task(session=session, actor=actor, task_id=task_id)
    refuse_approval_task(task)
    parents = await family_service.parent_ids(session=session, family_id=task.family_id)
    affected = list(dict.fromkeys([*task.assignee_ids, *parents]))
    task_events.record_deleted(session=session, task=task, affected_users=affected)
    await session.delete(task)
    await session.flush()
