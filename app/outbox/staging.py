"""Stage events in the caller's transaction; they are written when that transaction commits.

Services call a module's typed emitter (``task_events.record_created(...)``), which lands here.
Nothing touches the network: the rows go in the same transaction as the domain rows, so a
rollback leaves no event and a commit guarantees one.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.outbox.models import OutboxEvent, OutboxRecipient
from app.schemas import CamelModel

STAGED_EVENTS_KEY = "outbox.staged"
NOTIFY_CHANNEL_KEY = "outbox.notify_channel"


class EventPayload(CamelModel):
    """The ``data`` of one event type; subclasses name the type and its schema version.

    The subclass docstring says what happened; ``audience`` says who receives it (both feed
    the event catalogue).
    """

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1
    audience: ClassVar[str]
    registry: ClassVar[dict[tuple[str, int], type[EventPayload]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "event_type" in cls.__dict__:
            EventPayload.registry[(cls.event_type, cls.event_version)] = cls


@dataclass(frozen=True, slots=True)
class StagedEvent:
    type: str
    version: int
    data: dict[str, Any]
    family_id: uuid.UUID | None
    streams: tuple[str, ...]


def stage(
    session: AsyncSession,
    payload: EventPayload,
    *,
    streams: Iterable[str],
    family_id: uuid.UUID | None,
) -> None:
    """Add an event for ``streams`` to the session's transaction."""
    unique_streams = tuple(dict.fromkeys(streams))
    if not unique_streams:
        return  # nobody to tell
    staged = session.info.setdefault(STAGED_EVENTS_KEY, [])
    staged.append(
        StagedEvent(
            type=payload.event_type,
            version=payload.event_version,
            data=payload.model_dump(mode="json", by_alias=True),
            family_id=family_id,
            streams=unique_streams,
        )
    )


def notify_channel_info(channel: str | None) -> dict[str, Any]:
    """Session ``info`` that makes commits NOTIFY ``channel`` (``None``: rely on polling)."""
    return {NOTIFY_CHANNEL_KEY: channel}


_RESERVE_SEQUENCES = text(
    """
    INSERT INTO stream_sequences AS s (stream, last_seq)
    SELECT stream, n
    FROM unnest(CAST(:streams AS text[]), CAST(:counts AS bigint[])) AS t(stream, n)
    ORDER BY stream
    ON CONFLICT (stream) DO UPDATE SET last_seq = s.last_seq + excluded.last_seq
    RETURNING stream, last_seq
    """
)


@event.listens_for(Session, "before_commit")
def _write_staged_events(session: Session) -> None:
    staged: list[StagedEvent] = session.info.pop(STAGED_EVENTS_KEY, [])
    if not staged:
        return
    connection = session.connection()
    # Reserve every stream's numbers at once, in stream order, at the very end of the
    # transaction: the row locks serialise writers per stream (seq order == commit order),
    # are held only until commit, and a fixed lock order cannot deadlock.
    counts = Counter(stream for staged_event in staged for stream in staged_event.streams)
    streams = sorted(counts)
    reserved = connection.execute(
        _RESERVE_SEQUENCES, {"streams": streams, "counts": [counts[s] for s in streams]}
    )
    next_seq = {stream: last_seq - counts[stream] + 1 for stream, last_seq in reserved}

    event_ids = connection.scalars(
        insert(OutboxEvent).returning(OutboxEvent.id, sort_by_parameter_order=True),
        [
            {
                "type": e.type,
                "version": e.version,
                "payload": e.data,
                "family_id": e.family_id,
            }
            for e in staged
        ],
    ).all()
    recipients = []
    for event_id, staged_event in zip(event_ids, staged, strict=True):
        for stream in staged_event.streams:
            recipients.append({"event_id": event_id, "stream": stream, "seq": next_seq[stream]})
            next_seq[stream] += 1
    connection.execute(insert(OutboxRecipient), recipients)

    channel = session.info.get(NOTIFY_CHANNEL_KEY)
    if channel:
        # A constant payload: Postgres folds it with any other identical NOTIFY of this
        # transaction, so the commit-time notify lock is taken once, however many events.
        connection.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


@event.listens_for(Session, "after_rollback")
def _discard_staged_events(session: Session) -> None:
    session.info.pop(STAGED_EVENTS_KEY, None)


def payload_model(event_type: str, version: int) -> type[BaseModel] | None:
    """The payload model of a known event type and version."""
    return EventPayload.registry.get((event_type, version))
