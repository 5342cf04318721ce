"""The dispatchers' wake-up: a NOTIFY after the commit, from a connection of its own, coalesced.

A NOTIFY inside the writer's transaction would make every commit take Postgres's global
notify-queue lock, serialising concurrent writers (issue 12).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from psycopg import Notify
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.models  # noqa: F401  (every table: tasks' foreign keys name other domains' tables)
from app.families.models import User
from app.outbox.staging import stage
from app.outbox.streams import user_stream
from app.outbox.wakeup import ChannelNotifier
from app.tasks import service as task_service
from app.tasks.events import TaskDeleted
from app.tasks.schemas import TaskCreate
from tests.families import new_family

CHANNEL = "outbox_events"


class Boom(Exception):
    pass


async def family_with_child(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[User, User]:
    async with sessions() as session, session.begin():
        parent, child = await new_family(session, "P", "C")
    return parent, child


async def received(listener: psycopg.AsyncConnection[object], *, quiet: float) -> list[Notify]:
    """The notifications that arrive until none has for ``quiet`` seconds."""
    notifies: list[Notify] = []
    while batch := [n async for n in listener.notifies(timeout=quiet)]:
        notifies += batch
    return notifies


async def test_a_commit_wakes_the_dispatchers_from_another_connection_a_rollback_not_at_all(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {CHANNEL}")
        parent, child = await family_with_child(sessions)
        await received(listener, quiet=0.5)  # the family's own events (member.added)
        data = TaskCreate(title="Dishes", assigned_to=[child.id])

        async def create_then_fail() -> None:
            async with sessions() as session, session.begin():
                await task_service.create_task(
                    session=session, actor=parent, family_id=parent.family_id, data=data
                )
                raise Boom

        with pytest.raises(Boom):
            await create_then_fail()
        async with sessions() as session, session.begin():
            await session.execute(text("SELECT 1"))  # committed, but no event staged
        assert await received(listener, quiet=0.5) == []

        async with sessions() as session, session.begin():
            writer_pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await task_service.create_task(
                session=session, actor=parent, family_id=parent.family_id, data=data
            )
        notifies = await received(listener, quiet=0.5)
        assert len(notifies) == 1
        # Not the writer's backend: the NOTIFY was no part of its transaction.
        assert notifies[0].pid != writer_pid


async def test_concurrent_commits_share_notifies_and_the_last_commit_gets_one(
    sessions: async_sessionmaker[AsyncSession], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each NOTIFY takes 20 ms longer, as on a busy server, so commits surely land while one is
    # in flight (a fast local one shares a NOTIFY between only a few of them).
    send = ChannelNotifier.send

    def slow_send(self: ChannelNotifier) -> None:
        time.sleep(0.02)  # in the wake-up's own thread
        send(self)

    monkeypatch.setattr(ChannelNotifier, "send", slow_send)
    _, child = await family_with_child(sessions)
    writers, commits = 16, 200
    # How many task.deleted rows were committed, as counted on receiving each NOTIFY: what a
    # dispatcher woken by it would find.
    counted_on_notify: list[int] = []
    writing_done = asyncio.Event()

    async def commit(count: int) -> None:
        for _ in range(count):
            async with sessions() as session, session.begin():
                payload = TaskDeleted(
                    task_id=uuid.uuid4(), family_id=child.family_id, affected_users=[child.id]
                )
                stage(session, payload, streams=[user_stream(child.id)], family_id=child.family_id)

    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as counter,
    ):
        await listener.execute(f"LISTEN {CHANNEL}")
        await received(listener, quiet=0.5)  # the family's own events

        async def count_on_notify() -> None:
            while not (writing_done.is_set() and counted_on_notify[-1:] == [commits]):
                async for _ in listener.notifies(timeout=0.2):
                    cur = await counter.execute(
                        "SELECT count(*) FROM outbox_events WHERE type = 'task.deleted'"
                    )
                    row = await cur.fetchone()
                    assert row is not None
                    counted_on_notify.append(row[0])

        counting = asyncio.create_task(count_on_notify())
        share, rest = divmod(commits, writers)
        await asyncio.gather(*(commit(share + (i < rest)) for i in range(writers)))
        writing_done.set()
        # Never lose the last wake-up: some NOTIFY came after every commit had happened.
        await asyncio.wait_for(counting, timeout=10)

    assert len(counted_on_notify) < commits
