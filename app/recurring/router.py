"""REST endpoints for recurring task templates."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from app.auth.dependencies import CurrentUser
from app.db import DbSession
from app.pagination import PAGINATED_RESPONSES, PageParams
from app.recurring import service as recurring_service
from app.recurring.schemas import TaskTemplateCreate, TaskTemplateOut

router = APIRouter(tags=["recurring tasks"])


@router.get(
    "/families/{family_id}/task-templates",
    response_model=list[TaskTemplateOut],
    responses=PAGINATED_RESPONSES,
)
async def list_templates(
    family_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    page: PageParams,
) -> list[TaskTemplateOut]:
    """List the family's recurring task templates, a page at a time.

    Oldest first: by `createdAt`, then `id`.
    """
    templates = await recurring_service.list_templates(
        session=session, actor=actor, family_id=family_id, page=page
    )
    return [TaskTemplateOut.of(t) for t in page.answer(templates)]


@router.post(
    "/families/{family_id}/task-templates",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskTemplateOut,
)
async def create_template(
    family_id: uuid.UUID, body: TaskTemplateCreate, actor: CurrentUser, session: DbSession
) -> TaskTemplateOut:
    """Create a recurring task template (parents only); its tasks are generated each day."""
    template = await recurring_service.create_template(
        session=session, actor=actor, family_id=family_id, data=body
    )
    return TaskTemplateOut.of(template)


@router.delete("/task-templates/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(
    template_id: uuid.UUID, actor: CurrentUser, session: DbSession
) -> Response:
    """Delete a template (parents only); the tasks it generated stay."""
    await recurring_service.delete_template(session=session, actor=actor, template_id=template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
