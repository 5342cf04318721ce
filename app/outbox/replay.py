"""Catch-up reads of one stream from the outbox, for reconnecting sockets and for REST."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox.envelope import OutboxEventRow

# Only delivered events: pending ones are still on their way live, dead ones never went out.
_EVENTS_AFTER = text(
    """
    SELECT e.id, e.type, e.version, e.payload, e.family_id, e.created_at, e.attempts,
           jsonb_build_array(jsonb_build_array(r.stream, r.seq)) AS recipients
    FROM outbox_recipients AS r
    JOIN outbox_events AS e ON e.id = r.event_id
    WHERE r.stream = :stream AND r.seq > :after AND e.status = 'delivered'
    ORDER BY r.seq
    LIMIT :limit
    """
)

# Two index probes that stop at the first row, however long the stream's retained history.
_STREAM_BOUNDS = text(
    """
    SELECT
        (SELECT seq FROM outbox_recipients WHERE stream = :stream ORDER BY seq LIMIT 1),
        (SELECT r.seq FROM outbox_recipients AS r JOIN outbox_events AS e ON e.id = r.event_id
         WHERE r.stream = :stream AND e.status = 'delivered'
         ORDER BY r.seq DESC LIMIT 1)
    """
)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The events of ``stream`` after a client's last seq, and whether they are all of them."""

    stream: str
    envelopes: list[dict[str, Any]]
    # More events follow beyond ``limit``.
    has_more: bool
    # Some events after the client's seq are gone (retention): it must refetch its state.
    purged: bool
    # The seq the client may resume from.
    last_seq: int
    # The newest delivered seq of the stream (0 when it has none).
    head: int

    @property
    def complete(self) -> bool:
        return not (self.has_more or self.purged)


async def events_after(session: AsyncSession, *, stream: str, after: int, limit: int) -> CatchUp:
    """Up to ``limit`` delivered events of ``stream`` with seq > ``after``, in seq order."""
    bounds = (await session.execute(_STREAM_BOUNDS, {"stream": stream})).one()
    oldest, newest = bounds
    rows = (
        await session.execute(_EVENTS_AFTER, {"stream": stream, "after": after, "limit": limit + 1})
    ).all()
    events = [OutboxEventRow.from_row(tuple(row)) for row in rows[:limit]]
    purged = oldest is not None and oldest > after + 1
    envelopes = [e.envelope(e.recipients[0][1]) for e in events]
    last_seq = envelopes[-1]["seq"] if envelopes else max(after, newest or 0)
    return CatchUp(
        stream=stream,
        envelopes=envelopes,
        has_more=len(rows) > limit,
        purged=purged,
        last_seq=last_seq,
        head=newest or 0,
    )


async def stream_head(session: AsyncSession, *, stream: str) -> int:
    """The newest delivered seq of ``stream`` (0 when it has none)."""
    bounds = (await session.execute(_STREAM_BOUNDS, {"stream": stream})).one()
    return int(bounds[1] or 0)
