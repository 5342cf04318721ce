"""REST endpoints for tasks."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from app.auth.dependencies import CurrentUser
from app.db import DbSession
from app.pagination import PAGINATED_RESPONSES, PageParams
from app.tasks import service as task_service
from app.tasks.schemas import TaskCreate, TaskOut, TaskUpdate

router = APIRouter(tags=["tasks"])


@router.get(
    "/families/{family_id}/tasks", response_model=list[TaskOut], responses=PAGINATED_RESPONSES
)
async def list_tasks(
    family_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    page: PageParams,
) -> list[TaskOut]:
    """List the family's tasks, oldest first (by `createdAt`, then `id`), a page at a time."""
    tasks = await task_service.list_tasks(
        session=session, actor=actor, family_id=family_id, page=page
    )
    return [TaskOut.of(t) for t in page.answer(tasks)]


@router.post(
    "/families/{family_id}/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskOut
)
async def create_task(
    family_id: uuid.UUID, body: TaskCreate, actor: CurrentUser, session: DbSession
) -> TaskOut:
    """Create a task (parents only); its assignees receive `task.created`."""
    task = await task_service.create_task(
        session=session, actor=actor, family_id=family_id, data=body
    )
    return TaskOut.of(task)


@router.patch("/tasks/{task_id}", response_model=TaskOut)
async def update_task(
    task_id: uuid.UUID, body: TaskUpdate, actor: CurrentUser, session: DbSession
) -> TaskOut:
    """Change a task or reassign it (parents only); reassignment sends `task.assigned`."""
    task = await task_service.update_task(session=session, actor=actor, task_id=task_id, data=body)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/complete", response_model=TaskOut)
async def complete_task(task_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> TaskOut:
    """Complete a task (an assignee or a parent); sends `task.completed`."""
    task = await task_service.complete_task(session=session, actor=actor, task_id=task_id)
    return TaskOut.of(task)


@router.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(task_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> Response:
    """Delete a task (parents only); sends `task.deleted` to the affected users."""
    await task_service.delete_task(session=session, actor=actor, task_id=task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
