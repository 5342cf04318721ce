"""Which events become Web Push notifications, what they say, and how long they may wait.

Each domain declares its push-worthy events beside their payload models, in its ``events``
module, with ``@push_notification(Payload, ttl=…, urgency=…)`` on a function that turns a payload
into a ``Notification`` (or ``None``: no push for this one). Event types without a declaration
never push. The dispatcher turns a finished event into one push delivery per subscription of
each recipient with no visible app open (``dispatcher.push_queue``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from app.outbox.envelope import OutboxEventRow
from app.outbox.staging import EventPayload
from app.vapid_keys import b64url_encode

logger = logging.getLogger(__name__)

P = TypeVar("P", bound=EventPayload)
Urgency = Literal["very-low", "low", "normal", "high"]
Describe = Callable[[P], "Notification | None"]

# The seed's budget for a push message (push services accept 4 KB of ciphertext).
MAX_MESSAGE_BYTES = 3072
MAX_TITLE_CHARS = 80
MAX_BODY_CHARS = 240
# The envelope fields a notification keeps; ``data`` stays out (the app refetches on open).
ENVELOPE_FIELDS = ("id", "type", "version", "occurredAt", "familyId")


@dataclass(frozen=True, slots=True)
class Notification:
    """What the service worker shows for one event, and who must not get it."""

    title: str
    body: str
    # What the notification is about (``task:<id>``): the device's notification tag, so a newer
    # one replaces it on screen, and, hashed, the push ``Topic``, so the push service replaces
    # an older undelivered message about the same thing.
    about: str
    # Where a click on the notification opens the app: the view of what it is about.
    url: str = "/"
    # Recipients who caused the event and need no notification of it.
    # (None stands for an author who has left the family: nobody to skip.)
    skip_users: frozenset[uuid.UUID | None] = field(default_factory=frozenset)
    # When set, only these recipients are notified (the others still get the socket event).
    only_users: frozenset[uuid.UUID] | None = None


@dataclass(frozen=True, slots=True)
class PushPolicy(Generic[P]):
    """How one event type pushes: its notification, its TTL and its urgency."""

    model: type[P]
    describe: Describe[P]
    ttl_seconds: int
    urgency: Urgency


_POLICIES: dict[tuple[str, int], PushPolicy[Any]] = {}


def push_notification(
    model: type[P], *, ttl: timedelta, urgency: Urgency = "normal"
) -> Callable[[Describe[P]], Describe[P]]:
    """Declare that ``model``'s events push, with the notification the decorated function makes."""
    ttl_seconds = int(ttl.total_seconds())
    if ttl_seconds <= 0:
        # TTL 0 means "drop unless the device is online right now": useless to a sleeping app.
        raise ValueError("a push TTL must be at least one second")

    def register(describe: Describe[P]) -> Describe[P]:
        _POLICIES[(model.event_type, model.event_version)] = PushPolicy(
            model=model, describe=describe, ttl_seconds=ttl_seconds, urgency=urgency
        )
        return describe

    return register


def push_policy(event_type: str, version: int) -> PushPolicy[Any] | None:
    """The push policy of an event type and version (``None``: it never pushes)."""
    return _POLICIES.get((event_type, version))


def push_event_types() -> list[str]:
    """The event types that push, sorted."""
    return sorted({event_type for event_type, _ in _POLICIES})


def topic_of(about: str) -> str:
    """A push ``Topic`` for what a notification is about: 32 URL-safe base64 characters."""
    # RFC 8030 §5.4 allows at most 32 characters of the URL-safe alphabet: 24 bytes of a hash.
    return b64url_encode(hashlib.sha256(about.encode()).digest()[:24])


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def encoded(message: dict[str, Any]) -> bytes:
    """The bytes a push carries (before encryption)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()


def without_body(message: dict[str, Any]) -> dict[str, Any]:
    """The message shrunk for a push service that found it too large (413)."""
    return {**message, "body": ""}


def notification_message(event: OutboxEventRow, note: Notification) -> dict[str, Any]:
    """The envelope trimmed to what a notification needs, at most ``MAX_MESSAGE_BYTES``."""
    envelope = event.envelope(stream="", seq=0)
    message = {name: envelope[name] for name in ENVELOPE_FIELDS}
    message.update(
        title=_clip(note.title, MAX_TITLE_CHARS),
        body=_clip(note.body, MAX_BODY_CHARS),
        tag=note.about[:200],
        url=note.url[:500],
    )
    if len(encoded(message)) > MAX_MESSAGE_BYTES:
        message = without_body(message)
    return message


def delivery_specs(events: Iterable[OutboxEventRow]) -> list[dict[str, Any]]:
    """What the push queue needs of each push-worthy event: message, topic, TTL, urgency, and
    the streams it went to (whose users, or chat members, it pushes to)."""
    specs: list[dict[str, Any]] = []
    for event in events:
        policy = push_policy(event.type, event.version)
        if policy is None:
            continue
        try:
            note = policy.describe(policy.model.model_validate(event.payload))
            if note is None:
                continue
            spec: dict[str, Any] = {
                "event_id": event.id,
                "event_type": event.type,
                "payload": notification_message(event, note),
                "topic": topic_of(note.about),
                "ttl_seconds": policy.ttl_seconds,
                "urgency": policy.urgency,
                "streams": [stream for stream, _ in event.recipients],
                "skip_users": sorted(str(u) for u in note.skip_users if u is not None),
            }
            if note.only_users is not None:
                spec["only_users"] = sorted(str(u) for u in note.only_users)
        except Exception:
            # A faulty notification must never hold back the socket delivery it rides with.
            logger.exception(
                "building a push notification failed; no push for this event",
                extra={"event_id": event.id, "type": event.type},
            )
            continue
        specs.append(spec)
    return specs
