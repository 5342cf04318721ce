"""Sign-up and log-in."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import DUMMY_HASH, verify_password
from app.errors import Unauthorized
from app.families import service as family_service
from app.families.models import Role, User


async def signup(
    *, session: AsyncSession, family_name: str, display_name: str, email: str, password: str
) -> User:
    """Create a family and its first parent."""
    family = await family_service.create_family(session=session, name=family_name)
    return await family_service.add_member(
        session=session,
        family_id=family.id,
        email=email,
        display_name=display_name,
        password=password,
        role=Role.PARENT,
    )


async def authenticate(*, session: AsyncSession, email: str, password: str) -> User:
    """The user with these credentials; Unauthorized otherwise, without saying which was wrong."""
    user = await session.scalar(select(User).where(User.email == email.lower()))
    if user is None:
        await verify_password(DUMMY_HASH, password)
        raise Unauthorized("wrong e-mail or password")
    if not await verify_password(user.password_hash, password):
        raise Unauthorized("wrong e-mail or password")
    return user
