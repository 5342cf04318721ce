"""REST endpoints for family members."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from app.auth.dependencies import CurrentUser
from app.auth.passwords import hash_password
from app.db import DbSession
from app.errors import ErrorBody
from app.families import service as family_service
from app.families.schemas import MemberIn, MemberOut
from app.pagination import PAGINATED_RESPONSES, PageParams

router = APIRouter(tags=["families"])


@router.post(
    "/families/{family_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut
)
async def add_member(
    family_id: uuid.UUID, body: MemberIn, actor: CurrentUser, session: DbSession
) -> MemberOut:
    """Add a parent or child to the family (parents only); the family receives `member.added`."""
    # Checked before the password hash, which is slow on purpose (the service checks again).
    family_service.require_same_family(actor, family_id)
    family_service.require_parent(actor)
    user = await family_service.add_member_by_parent(
        session=session,
        actor=actor,
        family_id=family_id,
        email=body.email,
        display_name=body.display_name,
        password_hash=await hash_password(body.password),
        role=body.role,
    )
    return MemberOut.model_validate(user)


@router.delete(
    "/families/{family_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        409: {"model": ErrorBody, "description": "The family's last parent cannot be removed"}
    },
)
async def remove_member(
    family_id: uuid.UUID, user_id: uuid.UUID, actor: CurrentUser, session: DbSession
) -> None:
    """Remove a member (parents only, never the last parent): their sessions end at once."""
    await family_service.remove_member(
        session=session, actor=actor, family_id=family_id, user_id=user_id
    )


@router.get(
    "/families/{family_id}/members", response_model=list[MemberOut], responses=PAGINATED_RESPONSES
)
async def list_members(
    family_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    page: PageParams,
) -> list[MemberOut]:
    """List the family's members, a page at a time.

    Oldest first: by the time they joined, then `id` (cursors carry no e-mail).
    """
    family_service.require_same_family(actor, family_id)
    members = await family_service.list_members(session=session, family_id=family_id, page=page)
    return [MemberOut.model_validate(m) for m in page.answer(members)]
