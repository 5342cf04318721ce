"""In-process helpers: committing outbox events straight through the staging API (for tests
that need many), signing up through the services, reading the outbox."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg

from app.db import create_engine, create_sessionmaker
from app.outbox.staging import EventPayload, notify_channel_info, stage
from app.outbox.streams import user_stream
from app.tasks.events import TaskDeleted
from doubles.socket_clients import SocketRecorder


async def commit_events(
    database_url: str,
    user_id: str,
    family_id: str,
    count: int,
    *,
    per_transaction: int = 200,
    notify: bool = True,
    payload_type: type[EventPayload] = TaskDeleted,
) -> None:
    """Commit ``count`` task.deleted events for ``user_id``, ``per_transaction`` at a time."""
    engine = create_engine(database_url, pool_size=1)
    sessionmaker = create_sessionmaker(
        engine, info=notify_channel_info("outbox_events" if notify else None)
    )
    family = uuid.UUID(family_id)
    try:
        for start in range(0, count, per_transaction):
            async with sessionmaker() as session, session.begin():
                for _ in range(min(per_transaction, count - start)):
                    payload = payload_type(
                        task_id=uuid.uuid4(), family_id=family, affected_users=[uuid.UUID(user_id)]
                    )
                    stage(session, payload, streams=[user_stream(user_id)], family_id=family)
    finally:
        await engine.dispose()


async def wait_until_delivered(database_url: str, count: int, within: float = 30.0) -> None:
    """Wait until ``count`` of the rows ``commit_events`` wrote are delivered (the dispatcher
    has handed them over)."""
    async with (
        await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn,
        asyncio.timeout(within),
    ):
        while True:
            cur = await conn.execute(
                "SELECT count(*) FROM outbox_events"
                " WHERE status = 'delivered' AND type = 'task.deleted'"
            )
            row = await cur.fetchone()
            if row is not None and row[0] >= count:
                return
            await asyncio.sleep(0.05)


def outbox_statuses(database_url: str) -> dict[str, int]:
    """How many of the rows ``commit_events`` wrote are in each status (the family's own
    events, such as ``member.added``, are not counted)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM outbox_events WHERE type = 'task.deleted' GROUP BY status"
        ).fetchall()
    return dict(rows)


class FutureTaskDeleted(TaskDeleted):
    """A version this dispatcher does not know yet, as a newer writer might stage."""

    event_version = 2


# The domain events under test; connection signals (sync, presence) are someone else's.
DOMAIN_PREFIXES = ("task.", "karma.", "claim.")


def domain_events(events: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(name, envelope) for name, envelope in events if name.startswith(DOMAIN_PREFIXES)]


async def wait_for(recorder: SocketRecorder, count: int) -> None:
    """Until ``recorder`` has received at least ``count`` domain events."""
    await recorder.wait_until(lambda events: len(domain_events(events)) >= count)


def data_of(recorder: SocketRecorder) -> list[tuple[str, Any]]:
    return [(name, envelope["data"]) for name, envelope in domain_events(recorder.events)]
