"""REST catch-up: the events of the caller's own stream after a seq."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.auth.dependencies import CurrentUser
from app.db import DbSession
from app.outbox.catch_up import events_after
from app.outbox.streams import user_stream
from app.schemas import CamelModel

router = APIRouter(tags=["events"])


class EventsPage(CamelModel):
    stream: str
    events: list[dict[str, Any]]
    # False when events after ``after`` can never be sent (dead, gone with retention, or
    # ``after`` is beyond the stream's head): refetch the state instead (docs/delivery.md).
    complete: bool
    # How many seqs after ``after`` can never be sent.
    missing: int
    has_more: bool
    # The position to continue from: it stops before an event that is still on its way.
    last_seq: int


@router.get("/events", response_model=EventsPage)
async def list_events(
    actor: CurrentUser,
    session: DbSession,
    after: Annotated[int, Query(ge=0, description="The last seq the client has seen")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EventsPage:
    """Events of the caller's stream after `after`, oldest first: a catch-up over REST."""
    page = await events_after(session, stream=user_stream(actor.id), after=after, limit=limit)
    return EventsPage(
        stream=page.stream,
        events=page.envelopes,
        complete=page.complete,
        missing=page.missing,
        has_more=page.has_more,
        last_seq=page.last_seq,
    )
