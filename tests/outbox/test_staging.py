"""The write path: events are staged in the caller's transaction, numbered per stream."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.models  # noqa: F401  (every table: tasks' foreign keys name other domains' tables)
from app.families.models import User
from app.tasks import service as task_service
from app.tasks.schemas import TaskCreate
from tests.events import commit_events
from tests.families import new_family


async def family_with_child(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[User, User]:
    async with sessions() as session, session.begin():
        parent, child = await new_family(session, "P", "C")
    return parent, child


def outbox_rows(database_url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT e.type, r.stream, r.seq FROM outbox_events e"
            " JOIN outbox_recipients r ON r.event_id = e.id ORDER BY e.id, r.stream"
        ).fetchall()


class Boom(Exception):
    pass


async def test_rollback_leaves_no_event_and_commit_exactly_one(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    parent, child = await family_with_child(sessions)
    data = TaskCreate(title="Dishes", assigned_to=[child.id])

    async def create_then_fail() -> None:
        async with sessions() as session, session.begin():
            await task_service.create_task(
                session=session, actor=parent, family_id=parent.family_id, data=data
            )
            raise Boom

    with pytest.raises(Boom):
        await create_then_fail()
    assert outbox_rows(database_url) == []

    async with sessions() as session, session.begin():
        await task_service.create_task(
            session=session, actor=parent, family_id=parent.family_id, data=data
        )
    assert outbox_rows(database_url) == [("task.created", f"user:{child.id}", 1)]


async def test_concurrent_writers_never_share_or_skip_a_seq(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    _, child = await family_with_child(sessions)
    writers, per_writer = 16, 25
    await asyncio.gather(
        *(
            commit_events(
                database_url, str(child.id), str(child.family_id), per_writer, per_transaction=1
            )
            for _ in range(writers)
        )
    )
    rows = outbox_rows(database_url)
    seqs = sorted(seq for _, _, seq in rows)
    assert seqs == list(range(1, writers * per_writer + 1))
    # seq order is commit order: it rises with the event id, which is taken under the same lock.
    assert [seq for _, _, seq in rows] == seqs
