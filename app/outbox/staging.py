"""Stage events in the caller's transaction; they are written when that transaction commits.

Services call a module's typed emitter (``task_events.record_created(...)``), which lands here.
Nothing touches the network: the rows go in the same transaction as the domain rows, so a
rollback leaves no event and a commit guarantees one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

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


# Everything the outbox needs at commit, in one statement (one round trip, so the stream locks
# are held for as short a time as possible):
# - reserve each stream's numbers in stream order: the row locks serialise writers per stream
#   (seq order == commit order), last until commit, and a fixed lock order cannot deadlock;
# - only then draw the event ids (the InitPlan on `reserved` runs first, and output expressions
#   are evaluated after the ORDER BY), so within every stream id order is seq order too, which
#   the dispatcher relies on;
# - insert the events and their recipients, and NOTIFY once with a constant payload (Postgres
#   folds identical notifications, so the commit-time notify lock is taken once).
_WRITE_STAGED_EVENTS = text(
    """
    WITH staged AS (
        SELECT * FROM jsonb_to_recordset(CAST(:events AS jsonb))
            AS s(ord int, type text, version smallint, payload jsonb, family_id uuid,
                 streams text[])
    ),
    wanted AS (
        SELECT stream, count(*) AS n FROM staged, unnest(staged.streams) AS stream
        GROUP BY stream
    ),
    reserved AS (
        INSERT INTO stream_sequences AS q (stream, last_seq)
        SELECT stream, n FROM wanted ORDER BY stream
        ON CONFLICT (stream) DO UPDATE SET last_seq = q.last_seq + excluded.last_seq
        RETURNING stream, last_seq
    ),
    numbered AS (
        SELECT ord, nextval(pg_get_serial_sequence('outbox_events', 'id')) AS id
        FROM staged
        WHERE (SELECT count(*) FROM reserved) > 0
        ORDER BY ord
    ),
    events AS (
        INSERT INTO outbox_events (id, type, version, payload, family_id)
        OVERRIDING SYSTEM VALUE
        SELECT n.id, s.type, s.version, s.payload, s.family_id
        FROM staged AS s JOIN numbered AS n USING (ord)
        RETURNING id
    ),
    recipients AS (
        INSERT INTO outbox_recipients (event_id, stream, seq)
        SELECT n.id, x.stream,
               r.last_seq - w.n + row_number() OVER (PARTITION BY x.stream ORDER BY s.ord)
        FROM staged AS s
        JOIN numbered AS n USING (ord)
        CROSS JOIN LATERAL unnest(s.streams) AS x(stream)
        JOIN reserved AS r ON r.stream = x.stream
        JOIN wanted AS w ON w.stream = x.stream
        RETURNING event_id
    )
    SELECT (SELECT count(*) FROM events) AS events,
           (SELECT count(*) FROM recipients) AS recipients,
           CASE WHEN CAST(:channel AS text) IS NOT NULL
                THEN pg_notify(CAST(:channel AS text), '') END AS notified
    """
)


@event.listens_for(Session, "before_commit")
def _write_staged_events(session: Session) -> None:
    staged: list[StagedEvent] = session.info.pop(STAGED_EVENTS_KEY, [])
    if not staged:
        return
    events = [
        {
            "ord": ord_,
            "type": e.type,
            "version": e.version,
            "payload": e.data,
            "family_id": str(e.family_id) if e.family_id else None,
            "streams": list(e.streams),
        }
        for ord_, e in enumerate(staged)
    ]
    session.connection().execute(
        _WRITE_STAGED_EVENTS,
        {"events": json.dumps(events), "channel": session.info.get(NOTIFY_CHANNEL_KEY)},
    )


@event.listens_for(Session, "after_rollback")
def _discard_staged_events(session: Session) -> None:
    session.info.pop(STAGED_EVENTS_KEY, None)


def payload_model(event_type: str, version: int) -> type[BaseModel] | None:
    """The payload model of a known event type and version."""
    return EventPayload.registry.get((event_type, version))
