"""Catch-up reads of one stream from the outbox, for reconnecting sockets and for REST.

The gap contract (docs/delivery.md): a client's position is the highest seq up to which it has
every event. A catch-up from a position returns every delivered event after it, late ones
included, in seq order, and says exactly which seqs after it can never be sent: dead events,
and seqs with no row (retention deleted it) up to the stream's head. The head is the stream's
last committed seq; a position beyond it (a database restored from an older backup) is not
recovered either. The position the client may move to stops before the first event still on
its way, which will arrive live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox.envelope import OutboxEventRow

# One statement, so the head and the rows come from one snapshot: every seq up to the head
# committed with its row, and a missing row can only mean the row was deleted.
_CATCH_UP = text(
    """
    SELECT h.last_seq, x.seq, x.status, x.id, x.type, x.version, x.payload, x.family_id,
           x.created_at, x.attempts
    FROM (SELECT coalesce((SELECT last_seq FROM stream_sequences WHERE stream = :stream), 0)
              AS last_seq) AS h
    LEFT JOIN LATERAL (
        SELECT r.seq, e.status, e.id, e.type, e.version,
               CASE WHEN e.status = 'delivered' THEN e.payload END AS payload,
               e.family_id, e.created_at, e.attempts
        FROM outbox_recipients AS r JOIN outbox_events AS e ON e.id = r.event_id
        WHERE r.stream = :stream AND r.seq > :after
        ORDER BY r.seq
        LIMIT :limit
    ) AS x ON true
    ORDER BY x.seq
    """
)


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The events of ``stream`` after a client's position, and what can never be sent."""

    stream: str
    envelopes: list[dict[str, Any]]
    # More events follow beyond the limit (a socket's catch-up then refetches instead).
    has_more: bool
    # Seqs after the position that can never be sent: dead, or deleted by retention.
    missing: int
    # The position is beyond the stream's head (the database lost history it had sent).
    beyond_head: bool
    # The position the client may move to (with ``complete`` false, after refetching).
    last_seq: int
    # The stream's last committed seq (0 when it has none).
    head: int

    @property
    def complete(self) -> bool:
        """Nothing after the position is lost for good."""
        return not (self.missing or self.beyond_head)


async def events_after(session: AsyncSession, *, stream: str, after: int, limit: int) -> CatchUp:
    """Up to ``limit`` delivered events of ``stream`` with seq > ``after``, in seq order."""
    rows = (
        await session.execute(_CATCH_UP, {"stream": stream, "after": after, "limit": limit + 1})
    ).all()
    head = int(rows[0][0])
    if after > head:
        return CatchUp(
            stream, [], has_more=False, missing=0, beyond_head=True, last_seq=head, head=head
        )
    present = [row for row in rows if row.seq is not None]
    has_more = len(present) > limit
    envelopes: list[dict[str, Any]] = []
    missing = 0
    position, on_its_way = after, False
    expected = after + 1
    for row in present[:limit]:
        missing += row.seq - expected  # deleted by retention
        expected = row.seq + 1
        if row.status == "delivered":
            event = OutboxEventRow.from_row((*tuple(row)[3:], []))
            envelopes.append(event.envelope(stream, row.seq))
        elif row.status == "dead":
            missing += 1
        else:
            on_its_way = True  # pending: the position waits for it
        if not on_its_way:
            position = row.seq
    if not has_more:
        missing += head + 1 - expected  # deleted after the last row that is left
        if not on_its_way:
            position = head
    return CatchUp(
        stream=stream,
        envelopes=envelopes,
        has_more=has_more,
        missing=missing,
        beyond_head=False,
        last_seq=position,
        head=head,
    )


async def stream_head(session: AsyncSession, *, stream: str) -> int:
    """The last committed seq of ``stream`` (0 when it has none)."""
    head = await session.scalar(
        text("SELECT last_seq FROM stream_sequences WHERE stream = :stream"), {"stream": stream}
    )
    return int(head or 0)
