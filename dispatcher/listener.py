"""Wake-ups: LISTEN for the writers' NOTIFY and wake the drain loop; the table stays the truth."""

from __future__ import annotations

import asyncio

from app.pg_notify import listen
from dispatcher import metrics


async def wake_on_notify(
    conninfo: str, channel: str, wake: asyncio.Event, *, keepalive_seconds: float
) -> None:
    """Set ``wake`` on every notification, and after every (re)connect so the loop rescans."""

    def connected() -> None:
        metrics.LISTENER_UP.set(1)
        wake.set()  # LISTEN is in place: scan for whatever was committed while it was not

    def disconnected() -> None:
        metrics.LISTENER_UP.set(0)

    async for _ in listen(
        conninfo,
        channel,
        keepalive_seconds=keepalive_seconds,
        on_connect=connected,
        on_disconnect=disconnected,
    ):
        wake.set()
