"""``python -m app.demo``: create the demo family once, then print how to log in as its members.

Idempotent: when the demo parent's e-mail already exists nothing is written. The password comes
from ``DEMO_PASSWORD`` (default ``demo-password``); it is only used when the family is created.
"""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import hash_password
from app.db import create_engine, create_sessionmaker
from app.errors import AlreadyExists
from app.families import service as family_service
from app.families.models import Role, User
from app.settings import Settings, get_settings

FAMILY_NAME = "Demo family"
# Not "@demo.local": the API's e-mail validation refuses special-use domains such as .local,
# so such an account could never log in.
PARENT_EMAIL = "parent@demo.example.com"
PARENT_NAME = "Pat"
CHILD_EMAIL = "child@demo.example.com"
CHILD_NAME = "Charlie"
DEFAULT_PASSWORD = "demo-password"


async def create_demo_family(*, session: AsyncSession, password: str) -> bool:
    """Add the demo family to the session unless its parent exists; True when it was added."""
    existing = await session.scalar(select(User.id).where(User.email == PARENT_EMAIL))
    if existing is not None:
        return False
    password_hash = await hash_password(password)
    family = await family_service.create_family(session=session, name=FAMILY_NAME)
    for email, name, role in (
        (PARENT_EMAIL, PARENT_NAME, Role.PARENT),
        (CHILD_EMAIL, CHILD_NAME, Role.CHILD),
    ):
        await family_service.add_member(
            session=session,
            family_id=family.id,
            email=email,
            display_name=name,
            password_hash=password_hash,
            role=role,
        )
    return True


async def load_demo(settings: Settings, password: str) -> bool:
    """Create the demo family in one transaction; True when it was created by this call."""
    engine = create_engine(settings.database_url, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session, session.begin():
            return await create_demo_family(session=session, password=password)
    except AlreadyExists:
        # Another loader committed the same e-mails between our check and our insert; ours
        # rolled back as a whole, theirs is the demo family.
        return False
    finally:
        await engine.dispose()


def main() -> int:
    password = os.environ.get("DEMO_PASSWORD", DEFAULT_PASSWORD)
    created = asyncio.run(load_demo(get_settings(), password))
    port = os.environ.get("PORT", "8000")
    print("demo family " + ("created" if created else "already present") + ":")
    print(f"  parent: {PARENT_EMAIL}")
    print(f"  child:  {CHILD_EMAIL}")
    note = "" if created else " (unless DEMO_PASSWORD was different when it was created)"
    print(f"  password: {password}{note}")
    print(f"log in at http://127.0.0.1:{port}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
