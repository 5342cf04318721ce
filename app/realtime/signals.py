"""The wire shapes of the socket's ephemeral signals: sent without an envelope, never through
the outbox, and may be lost (a client recovers with ``sync.request`` or a refetch).

Server to client: ``sync``, ``resync``, ``presence.snapshot``, ``presence.changed``,
``session.expired``. Client to server (acknowledged through the client-event gate):
``sync.request``, ``auth.renew``, ``app.visibility``. The chat's own signals are in
``app.chat.schemas``. The event catalogue (``app.outbox.asyncapi``) describes all of them.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field

from app.schemas import CamelModel


class SyncRequest(CamelModel):
    """`sync.request` from a client: catch a stream up after its position, then `sync`."""

    last_seq: int = Field(ge=0)
    # The socket's own user stream when not given, or a chat stream (`chat:<id>`) it joined.
    stream: str | None = Field(default=None, max_length=100)


class RenewRequest(CamelModel):
    """`auth.renew` from a client: the access token it refreshed, for the socket to go on with."""

    token: str = Field(min_length=1, max_length=4096)


class VisibilityIn(CamelModel):
    """`app.visibility` from a client: is the app in front of its user? (push skips those who
    see it)."""

    visible: bool


class SyncOut(CamelModel):
    """`sync`: a catch-up of a stream is over (docs/delivery.md). With `recovered: false` the
    client refetches its state; either way `lastSeq` is its position from now on."""

    stream: str
    recovered: bool
    # How many events the catch-up sent (the wire's older name).
    replayed: int
    # Seqs in the range that can never be sent: dead, or gone with retention.
    missing: int
    last_seq: int | None


class ResyncOut(CamelModel):
    """`resync`: live events of a stream may have been lost on their way to this socket; the
    client sends `sync.request` from its position."""

    stream: str
    reason: Literal["channel_lost", "dead"]


class SessionExpired(CamelModel):
    """`session.expired`: the socket's access token expired; it is closed right after. The client
    reconnects with a refreshed token and its `lastSeq`, losing nothing."""

    reason: Literal["token_expired"]


class PresenceSnapshot(CamelModel):
    """`presence.snapshot`, sent to a socket once when it connects: who in its family is online
    (itself included); `presence.changed` keeps it current from there."""

    online: list[uuid.UUID]


class PresenceChanged(CamelModel):
    """`presence.changed`, sent to the family room: a member's first socket connected or their
    last one went away."""

    user_id: uuid.UUID
    online: bool
