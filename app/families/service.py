"""Families and members: creation, listing and the access checks other modules rely on."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import AlreadyExists, Forbidden, NotFound
from app.families.models import Family, Role, User


async def create_family(*, session: AsyncSession, name: str) -> Family:
    family = Family(name=name)
    session.add(family)
    await session.flush()
    return family


async def add_member(
    *,
    session: AsyncSession,
    family_id: uuid.UUID,
    email: str,
    display_name: str,
    password_hash: str,
    role: Role,
) -> User:
    """Create a user in ``family_id``; a taken e-mail is AlreadyExists.

    The caller hashes the password (``app.auth.passwords``), before its transaction takes a
    pooled connection if it can: the hash is slow on purpose.
    """
    user = User(
        family_id=family_id,
        email=email.lower(),
        display_name=display_name,
        role=role,
        password_hash=password_hash,
    )
    try:
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise AlreadyExists("a user with this e-mail already exists") from exc
    return user


def require_same_family(actor: User, family_id: uuid.UUID) -> None:
    """Another family's resources do not exist as far as ``actor`` can tell."""
    if actor.family_id != family_id:
        raise NotFound("family not found")


def require_parent(actor: User) -> None:
    if not actor.is_parent:
        raise Forbidden("only parents may do this")


async def list_members(*, session: AsyncSession, family_id: uuid.UUID) -> list[User]:
    result = await session.scalars(
        select(User).where(User.family_id == family_id).order_by(User.created_at, User.email)
    )
    return list(result)


async def family_members_by_id(
    *, session: AsyncSession, family_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> list[User]:
    """The named users, all of whom must belong to ``family_id``."""
    wanted = set(user_ids)
    if not wanted:
        return []
    found = list(
        await session.scalars(select(User).where(User.family_id == family_id, User.id.in_(wanted)))
    )
    if len(found) != len(wanted):
        missing = sorted(str(i) for i in wanted - {u.id for u in found})
        raise NotFound("some users are not members of this family", details={"userIds": missing})
    return found


async def parent_ids(*, session: AsyncSession, family_id: uuid.UUID) -> list[uuid.UUID]:
    result = await session.scalars(
        select(User.id).where(User.family_id == family_id, User.role == Role.PARENT)
    )
    return list(result)
