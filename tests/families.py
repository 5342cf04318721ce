"""Families made straight through the services, for tests that work below the REST API."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import hash_password
from app.families import service as family_service
from app.families.models import Role, User

PASSWORD = "correct horse battery"


async def new_family(session: AsyncSession, parent: str, *children: str) -> list[User]:
    """A family with a parent named ``parent`` and one child per name in ``children``."""
    family = await family_service.create_family(session=session, name=f"{parent}'s family")
    password_hash = await hash_password(PASSWORD)
    members = []
    for name, role in ((parent, Role.PARENT), *((child, Role.CHILD) for child in children)):
        members.append(
            await family_service.add_member(
                session=session,
                family_id=family.id,
                email=f"{name.lower()}-{uuid.uuid4().hex}@example.com",
                display_name=name,
                password_hash=password_hash,
                role=role,
            )
        )
    return members
