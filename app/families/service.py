"""Families and members: creation, listing and the access checks other modules rely on."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.sessions import revoke_sessions
from app.errors import AlreadyExists, Conflict, Forbidden, NotFound
from app.families import events as family_events
from app.families.models import Family, Role, User
from app.pagination import Page, PageRequest, family_rows_oldest_first


class LastParent(Conflict):
    code = "last_parent"


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


async def add_member_by_parent(
    *,
    session: AsyncSession,
    actor: User,
    family_id: uuid.UUID,
    email: str,
    display_name: str,
    password_hash: str,
    role: Role,
) -> User:
    """A parent adds a member to their family; everyone in it receives `member.added`."""
    require_same_family(actor, family_id)
    require_parent(actor)
    member = await add_member(
        session=session,
        family_id=family_id,
        email=email,
        display_name=display_name,
        password_hash=password_hash,
        role=role,
    )
    others = [m for m in await member_ids(session=session, family_id=family_id) if m != member.id]
    family_events.record_added(session=session, member=member, members=others)
    return member


async def remove_member(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Remove a member (parents only; never the last parent) and end all their sessions.

    Their tasks, karma and claims go with them; what they made for others (tasks, templates,
    chats, messages) stays without an author. `session.revoked` closes their sockets and
    `member.removed` tells everyone left.
    """
    require_same_family(actor, family_id)
    require_parent(actor)
    # Membership changes of one family queue here: two parents removing each other cannot
    # both see the other as the remaining parent.
    await session.execute(select(Family.id).where(Family.id == family_id).with_for_update())
    members = {
        m.id: m for m in await session.scalars(select(User).where(User.family_id == family_id))
    }
    member = members.pop(user_id, None)
    if member is None:
        raise NotFound("member not found")
    if member.is_parent and not any(m.is_parent for m in members.values()):
        raise LastParent("the family's last parent cannot be removed")
    await revoke_sessions(session, member, reason="member_removed")
    family_events.record_removed(
        session=session, user_id=member.id, family_id=family_id, remaining=list(members)
    )
    await session.delete(member)
    await session.flush()


def require_same_family(actor: User, family_id: uuid.UUID) -> None:
    """Another family's resources do not exist as far as ``actor`` can tell."""
    if actor.family_id != family_id:
        raise NotFound("family not found")


def require_parent(actor: User) -> None:
    if not actor.is_parent:
        raise Forbidden("only parents may do this")


async def list_members(
    *, session: AsyncSession, family_id: uuid.UUID, page: PageRequest
) -> Page[User]:
    """A page of the family's members, oldest first: by ``created_at``, then ``id``."""
    return await family_rows_oldest_first(session, User, family_id=family_id, page=page)


# Every task creation and reassignment runs it: built once (as SQLAlchemy builds ``in_()`` of
# a list, an expanding parameter), not per request.
_MEMBERS_BY_ID = select(User).where(
    User.family_id == bindparam("family_id"), User.id.in_(bindparam("ids", expanding=True))
)


async def family_members_by_id(
    *, session: AsyncSession, family_id: uuid.UUID, user_ids: list[uuid.UUID]
) -> list[User]:
    """The named users, all of whom must belong to ``family_id``."""
    wanted = set(user_ids)
    if not wanted:
        return []
    params = {"family_id": family_id, "ids": list(wanted)}
    found = list(await session.scalars(_MEMBERS_BY_ID, params))
    if len(found) != len(wanted):
        missing = sorted(str(i) for i in wanted - {u.id for u in found})
        raise NotFound("some users are not members of this family", details={"userIds": missing})
    return found


async def member_ids(*, session: AsyncSession, family_id: uuid.UUID) -> list[uuid.UUID]:
    result = await session.scalars(select(User.id).where(User.family_id == family_id))
    return list(result)


async def parent_ids(*, session: AsyncSession, family_id: uuid.UUID) -> list[uuid.UUID]:
    result = await session.scalars(
        select(User.id).where(User.family_id == family_id, User.role == Role.PARENT)
    )
    return list(result)
