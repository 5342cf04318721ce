"""Task events: typed payloads (the seed's contracts) and their recipients, staged in the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox.staging import EventPayload, stage
from app.outbox.streams import user_stream
from app.push.notifications import Notification, push_notification
from app.tasks.models import Task
from app.tasks.schemas import TaskOut


class TaskCreated(EventPayload):
    """A task was created."""

    event_type = "task.created"
    audience = "its assignees (the family's parents, for an approval task)"
    task_id: uuid.UUID
    family_id: uuid.UUID
    assigned_to: list[uuid.UUID]
    task: TaskOut


class TaskAssigned(EventPayload):
    """A task's assignees changed."""

    event_type = "task.assigned"
    audience = "the new assignees, and those removed"
    task_id: uuid.UUID
    assigned_to: list[uuid.UUID]
    task: TaskOut


class TaskCompleted(EventPayload):
    """A task was completed."""

    event_type = "task.completed"
    audience = "the family's parents and the assignees"
    task_id: uuid.UUID
    completed_by: uuid.UUID
    task: TaskOut


class TaskDeleted(EventPayload):
    """A task was deleted."""

    event_type = "task.deleted"
    audience = "the affected users: the assignees and the family's parents"
    task_id: uuid.UUID
    family_id: uuid.UUID
    affected_users: list[uuid.UUID]


# Pushes (app.push): the creator and the completer acted themselves; a removed assignee and a
# deleted task get the socket event only.
@push_notification(TaskCreated, ttl=timedelta(days=1))
def _created_notification(event: TaskCreated) -> Notification:
    return Notification(
        title="New task",
        body=event.task.title,
        about=f"task:{event.task_id}",
        url=f"/#tasks/{event.task_id}",
        skip_users=frozenset({event.task.created_by}),
    )


@push_notification(TaskAssigned, ttl=timedelta(days=1))
def _assigned_notification(event: TaskAssigned) -> Notification:
    return Notification(
        title="A task for you",
        body=event.task.title,
        about=f"task:{event.task_id}",
        url=f"/#tasks/{event.task_id}",
        only_users=frozenset(event.assigned_to),
    )


@push_notification(TaskCompleted, ttl=timedelta(days=1))
def _completed_notification(event: TaskCompleted) -> Notification:
    return Notification(
        title="Task done",
        body=event.task.title,
        about=f"task:{event.task_id}",
        url=f"/#tasks/{event.task_id}",
        skip_users=frozenset({event.completed_by}),
    )


def _record(
    session: AsyncSession, payload: EventPayload, family_id: uuid.UUID, users: Iterable[uuid.UUID]
) -> None:
    stage(session, payload, streams=[user_stream(u) for u in users], family_id=family_id)


def record_created(*, session: AsyncSession, task: Task) -> None:
    assignees = task.assignee_ids
    payload = TaskCreated(
        task_id=task.id, family_id=task.family_id, assigned_to=assignees, task=TaskOut.of(task)
    )
    _record(session, payload, task.family_id, assignees)


def record_assigned(*, session: AsyncSession, task: Task, removed: Iterable[uuid.UUID]) -> None:
    assignees = task.assignee_ids
    payload = TaskAssigned(task_id=task.id, assigned_to=assignees, task=TaskOut.of(task))
    _record(session, payload, task.family_id, [*assignees, *removed])


def record_completed(
    *, session: AsyncSession, task: Task, completed_by: uuid.UUID, parents: Iterable[uuid.UUID]
) -> None:
    payload = TaskCompleted(task_id=task.id, completed_by=completed_by, task=TaskOut.of(task))
    _record(session, payload, task.family_id, [*parents, *task.assignee_ids])


def record_deleted(*, session: AsyncSession, task: Task, affected_users: list[uuid.UUID]) -> None:
    payload = TaskDeleted(task_id=task.id, family_id=task.family_id, affected_users=affected_users)
    _record(session, payload, task.family_id, affected_users)
