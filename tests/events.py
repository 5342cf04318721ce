"""Committing outbox events straight through the staging API, for tests that need many."""

from __future__ import annotations

import uuid

from app.db import create_engine, create_sessionmaker
from app.outbox.staging import EventPayload, notify_channel_info, stage
from app.realtime.rooms import user_room
from app.tasks.events import TaskDeleted


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
                    stage(session, payload, streams=[user_room(user_id)], family_id=family)
    finally:
        await engine.dispose()
