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

from sqlalchemy.ext.asyncio import AsyncSession

from app.outbox import queries
from app.outbox.envelope import OutboxEventRow


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The events of ``stream`` after a client's position, and what can never be sent."""

    stream: str
    # The delivered events to send, each with its seq on the stream, in seq order.
    events: list[tuple[OutboxEventRow, int]]
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

    @property
    def envelopes(self) -> list[dict[str, Any]]:
        """The events as envelopes (REST's page)."""
        return [event.envelope(self.stream, seq) for event, seq in self.events]

    def envelope_texts(self) -> list[tuple[str, str]]:
        """Each event's (type, envelope as JSON text): a socket's catch-up sends these without
        building and encoding a dict per envelope (``OutboxEventRow.envelope_text``)."""
        return [
            (event.type, event.envelope_text().on(self.stream, seq)) for event, seq in self.events
        ]


async def events_after(session: AsyncSession, *, stream: str, after: int, limit: int) -> CatchUp:
    """Up to ``limit`` delivered events of ``stream`` with seq > ``after``, in seq order."""
    conn = await session.connection()
    params = {"stream": stream, "after": after, "limit": limit + 1}
    rows = (await conn.exec_driver_sql(queries.CATCH_UP, params)).all()
    head = int(rows[0][0])
    if after > head:
        return CatchUp(
            stream, [], has_more=False, missing=0, beyond_head=True, last_seq=head, head=head
        )
    present = [row for row in rows if row.seq is not None]
    has_more = len(present) > limit
    events: list[tuple[OutboxEventRow, int]] = []
    missing = 0
    position, on_its_way = after, False
    expected = after + 1
    for row in present[:limit]:
        missing += row.seq - expected  # deleted by retention
        expected = row.seq + 1
        if row.status == "delivered":
            events.append((OutboxEventRow.from_row((*tuple(row)[3:], [])), row.seq))
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
        events=events,
        has_more=has_more,
        missing=missing,
        beyond_head=False,
        last_seq=position,
        head=head,
    )


async def stream_head(session: AsyncSession, *, stream: str) -> int:
    """The last committed seq of ``stream`` (0 when it has none)."""
    conn = await session.connection()
    head = (await conn.exec_driver_sql(queries.STREAM_HEAD, {"stream": stream})).scalar()
    return int(head or 0)
