"""Every event type of the platform: importing this module registers all payload models."""

from __future__ import annotations

from app.auth import events as auth_events
from app.chat import events as chat_events
from app.families import events as family_events
from app.karma import events as karma_events
from app.outbox.staging import EventPayload
from app.rewards import events as reward_events
from app.tasks import events as task_events

EVENT_MODULES = (
    task_events,
    karma_events,
    reward_events,
    chat_events,
    family_events,
    auth_events,
)


def event_types() -> dict[tuple[str, int], type[EventPayload]]:
    """The payload model of each (type, version)."""
    return dict(EventPayload.registry)
