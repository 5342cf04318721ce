"""Task use cases. Each stages its event in the caller's transaction and never commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, Forbidden, NotFound
from app.families import service as family_service
from app.families.models import User
from app.tasks import events as task_events
from app.tasks.models import Task
from app.tasks.schemas import TaskCreate, TaskUpdate


async def get_task(*, session: AsyncSession, actor: User, task_id: uuid.UUID) -> Task:
    """The task, locked for update; another family's task is NotFound."""
    task = await session.get(Task, task_id, with_for_update=True)
    if task is None or task.family_id != actor.family_id:
        raise NotFound("task not found")
    return task


async def list_tasks(*, session: AsyncSession, actor: User, family_id: uuid.UUID) -> list[Task]:
    family_service.require_same_family(actor, family_id)
    result = await session.scalars(
        select(Task).where(Task.family_id == family_id).order_by(Task.created_at, Task.id)
    )
    return list(result)


async def create_task(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, data: TaskCreate
) -> Task:
    family_service.require_same_family(actor, family_id)
    family_service.require_parent(actor)
    assignees = await family_service.family_members_by_id(
        session=session, family_id=family_id, user_ids=data.assigned_to
    )
    task = Task(
        family_id=family_id,
        title=data.title,
        description=data.description,
        karma_reward=data.karma_reward,
        due_at=data.due_at,
        created_by=actor.id,
        assignees=assignees,
    )
    session.add(task)
    await session.flush()
    await session.refresh(task, ["created_at"])
    task_events.record_created(session=session, task=task)
    return task


async def update_task(
    *, session: AsyncSession, actor: User, task_id: uuid.UUID, data: TaskUpdate
) -> Task:
    family_service.require_parent(actor)
    task = await get_task(session=session, actor=actor, task_id=task_id)
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
    task.completed_by = actor.id
    task.completed_at = datetime.now(UTC)
    await session.flush()
    parents = await family_service.parent_ids(session=session, family_id=task.family_id)
    task_events.record_completed(session=session, task=task, completed_by=actor.id, parents=parents)
    return task


async def delete_task(*, session: AsyncSession, actor: User, task_id: uuid.UUID) -> None:
    family_service.require_parent(actor)
    task = await get_task(session=session, actor=actor, task_id=task_id)
    parents = await family_service.parent_ids(session=session, family_id=task.family_id)
    affected = list(dict.fromkeys([*task.assignee_ids, *parents]))
    task_events.record_deleted(session=session, task=task, affected_users=affected)
    await session.delete(task)
    await session.flush()
