"""Wake-ups: LISTEN for the writers' NOTIFY and wake the drain loop; the table stays the truth."""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge

from app.pg_notify import listen


async def wake_on_notify(
    conninfo: str,
    channel: str,
    wake: asyncio.Event,
    *,
    keepalive_seconds: float,
    up: Gauge | None = None,
) -> None:
    """Set ``wake`` on every notification, and after every (re)connect so the loop rescans.

    Wakes the outbox's drain loop and the push sender; ``up`` (when given) shows whether the
    LISTEN connection is in place.
    """

    def connected() -> None:
        if up is not None:
            up.set(1)
        wake.set()  # LISTEN is in place: scan for whatever was committed while it was not

    def disconnected() -> None:
        if up is not None:
            up.set(0)

    async for _ in listen(
        conninfo,
        channel,
        keepalive_seconds=keepalive_seconds,
        on_connect=connected,
        on_disconnect=disconnected,
    ):
        wake.set()
