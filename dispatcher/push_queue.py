"""Filling the Web Push queue: the drain loop's side of it.

The pushes of finished events are queued in the very transaction that marks the events
delivered, so a push is queued exactly when its event reaches the Socket.IO tier; the push
sender (``dispatcher.push_sender``) drains the queue apart from socket delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.types.json import Jsonb

from app.outbox.envelope import OutboxEventRow
from app.push import queries
from app.push.notifications import delivery_specs
from dispatcher import metrics


def enqueue_parameters(events: Sequence[OutboxEventRow], *, channel: str) -> dict[str, Any] | None:
    """``queries.ENQUEUE``'s parameters for ``events``; ``None`` when none of them pushes."""
    specs = delivery_specs(events)
    if not specs:
        return None
    return {
        "specs": Jsonb(specs),
        "user_pattern": queries.USER_STREAM_PATTERN,
        "chat_pattern": queries.CHAT_STREAM_PATTERN,
        "channel": channel,
    }


async def enqueue_pushes(
    conn: AsyncConnection[Any], events: Sequence[OutboxEventRow], *, channel: str
) -> AsyncCursor[Any] | None:
    """Queue the pushes of ``events`` in the caller's transaction.

    Returns the statement's cursor (``None`` when none of the events pushes) without waiting
    for its result: in a pipeline it then travels with the COMMIT, one round trip fewer
    before the batch's emits go out. ``count_enqueued`` reads it after the commit.
    """
    params = enqueue_parameters(events, channel=channel)
    if params is None:
        return None
    return await conn.execute(queries.ENQUEUE, params)


async def count_enqueued(cur: AsyncCursor[Any]) -> int:
    """How many pushes ``enqueue_pushes`` queued, counted in the metrics."""
    total = 0
    for event_type, count, _ in await cur.fetchall():
        metrics.PUSH_ENQUEUED.labels(event_type).inc(count)
        total += count
    return total
