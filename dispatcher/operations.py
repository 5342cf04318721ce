"""Operator queries over the outbox, shared by the CLI and the dispatcher's scheduled jobs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.outbox import queries
from app.push import queries as push_queries
from dispatcher.liveness import LIVENESS_LOCK_CLASS

Status = Literal["pending", "delivered", "dead"]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which rows an operator means; every field narrows the selection."""

    status: Status | None = None
    type: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    recipient: str | None = None

    def where(self) -> tuple[sql.Composed, dict[str, object]]:
        return queries.filter_where(queries.EVENT_FILTERS, self)


async def stats(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """Backlog, oldest pending age, dead count, and counts per type and status."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.STATS)
        totals = await cur.fetchone()
        await cur.execute(queries.STATS_PER_TYPE)
        per_type = await cur.fetchall()
    assert totals is not None
    return {**totals, "per_type": per_type}


async def list_events(
    conn: AsyncConnection[Any], selection: EventFilter, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest rows matching ``selection``."""
    where, params = selection.where()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.list_events(where), {**params, "limit": limit})
        return await cur.fetchall()


async def get_event(conn: AsyncConnection[Any], event_id: int) -> dict[str, Any] | None:
    """One row with its payload, claim and error history."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.GET_EVENT, {"id": event_id})
        return await cur.fetchone()


async def events_by_id(conn: AsyncConnection[Any], event_ids: list[int]) -> list[dict[str, Any]]:
    """The listed rows that exist, in id order."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.EVENTS_BY_ID, {"ids": event_ids})
        return await cur.fetchall()


async def replay(
    conn: AsyncConnection[Any],
    event_ids: list[int],
    *,
    notify_channel: str,
    selection: EventFilter | None = None,
) -> list[int]:
    """Make rows pending again (their error history stays) and wake the dispatchers."""
    # With a selection, rows that changed since they were selected (a dead row replayed and
    # delivered meanwhile, say) no longer match and are left alone.
    where, params = (selection or EventFilter()).where()
    async with conn.cursor() as cur:
        # A row being sent right now (a live lease) is left alone.
        await cur.execute(queries.replay(where), {**params, "ids": event_ids})
        replayed = [row[0] for row in await cur.fetchall()]
        if replayed:
            await cur.execute(queries.NOTIFY, {"channel": notify_channel})
    return sorted(replayed)


async def matching_ids(
    conn: AsyncConnection[Any], selection: EventFilter, *, limit: int | None
) -> list[int]:
    """Ids of rows matching ``selection``, oldest first (all of them when ``limit`` is None)."""
    where, params = selection.where()
    async with conn.cursor() as cur:
        await cur.execute(queries.matching_ids(where), {**params, "limit": limit})
        return [row[0] for row in await cur.fetchall()]


async def purge_delivered(
    conn: AsyncConnection[Any], *, older_than: timedelta, batch_size: int
) -> int:
    """Delete delivered rows older than the window, one short transaction per batch."""
    total = 0
    async with conn.cursor() as cur:
        await cur.execute(queries.PURGE_CUTOFF, {"window": older_than})
        row = await cur.fetchone()
        assert row is not None
        cutoff: datetime = row[0]
        while True:
            async with conn.transaction():
                await cur.execute(queries.PURGE_DELIVERED, {"cutoff": cutoff, "batch": batch_size})
                deleted = cur.rowcount
            total += deleted
            if deleted < batch_size:
                return total


async def _one_row(conn: AsyncConnection[Any], query: str) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query)
        row = await cur.fetchone()
    assert row is not None
    return row


async def backlog_gauges(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """The cheap numbers for metrics: served by indexes, never a scan of delivered rows."""
    return await _one_row(conn, queries.BACKLOG_GAUGES)


# Web Push deliveries (dispatcher.push_sender): the same views over the push queue, and its
# housekeeping.

PushStatus = Literal["pending", "sent", "dead"]


@dataclass(frozen=True, slots=True)
class PushFilter:
    """Which push deliveries an operator means; ``recipient`` is a ``user:<id>`` stream."""

    status: PushStatus | None = None
    type: str | None = None
    older_than: timedelta | None = None
    newer_than: timedelta | None = None
    recipient: str | None = None

    def where(self) -> tuple[sql.Composed, dict[str, object]]:
        return queries.filter_where(push_queries.PUSH_FILTERS, self)


async def push_stats(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """The push queue's backlog, oldest pending age, dead and sent counts, per type and status."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(push_queries.STATS)
        totals = await cur.fetchone()
        await cur.execute(push_queries.STATS_PER_TYPE)
        per_type = await cur.fetchall()
    assert totals is not None
    return {**totals, "per_type": per_type}


async def list_push_deliveries(
    conn: AsyncConnection[Any], selection: PushFilter, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest push deliveries matching ``selection``, with their push service's host."""
    where, params = selection.where()
    async with conn.cursor(row_factory=dict_row) as cur:
        # The endpoint is a capability URL: only its push service is shown.
        await cur.execute(push_queries.list_deliveries(where), {**params, "limit": limit})
        return await cur.fetchall()


async def push_gauges(conn: AsyncConnection[Any]) -> dict[str, Any]:
    """The push queue's numbers for metrics, as ``backlog_gauges`` for the outbox."""
    return await _one_row(conn, push_queries.GAUGES)


async def purge_sent_pushes(
    conn: AsyncConnection[Any], *, older_than: timedelta, batch_size: int
) -> int:
    """Delete sent push deliveries older than the window, one batch per statement."""
    total = 0
    params = {"seconds": older_than.total_seconds(), "batch": batch_size}
    async with conn.cursor() as cur:
        while True:
            await cur.execute(push_queries.PURGE_SENT, params)
            total += cur.rowcount
            if cur.rowcount < batch_size:
                return total


async def workers(conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
    """The dispatchers known to the database, oldest first: live or not, and their live leases.

    A row whose owner holds no liveness lock is a dispatcher that is gone; the running
    dispatchers' liveness job deletes such rows within about a second.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.WORKERS, {"lock_class": LIVENESS_LOCK_CLASS})
        return await cur.fetchall()


async def stale_events(conn: AsyncConnection[Any], *, limit: int = 50) -> list[dict[str, Any]]:
    """Stuck pending rows, oldest first, each with its ``reasons``."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.STALE, {"lock_class": LIVENESS_LOCK_CLASS, "limit": limit})
        return await cur.fetchall()
