"""Task templates: their use cases over REST (the tasks they make: app.recurring.generation)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.families import service as family_service
from app.families.models import User
from app.pagination import Page, PageRequest, family_rows_oldest_first
from app.recurring.models import TaskTemplate
from app.recurring.schemas import TaskTemplateCreate


async def list_templates(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, page: PageRequest
) -> Page[TaskTemplate]:
    """A page of the family's templates, oldest first: by ``created_at``, then ``id``."""
    family_service.require_same_family(actor, family_id)
    return await family_rows_oldest_first(session, TaskTemplate, family_id=family_id, page=page)


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
