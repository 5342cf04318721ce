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
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.outbox import queries
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
    # Everything in one statement (app.outbox.queries), in the transaction being committed.
    session.connection().exec_driver_sql(
        queries.WRITE_STAGED_EVENTS,
        {"events": json.dumps(events), "channel": session.info.get(NOTIFY_CHANNEL_KEY)},
    )


@event.listens_for(Session, "after_rollback")
def _discard_staged_events(session: Session) -> None:
    session.info.pop(STAGED_EVENTS_KEY, None)


def payload_model(event_type: str, version: int) -> type[BaseModel] | None:
    """The payload model of a known event type and version."""
    return EventPayload.registry.get((event_type, version))
