"""Catch-up on reconnect: a socket gets what it missed from the outbox before live events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import statement_session
from app.outbox.catch_up import events_after, stream_head
from app.realtime import metrics
from app.realtime.holding import HeldEmit, HoldingManager
from app.realtime.signals import SyncOut

logger = logging.getLogger(__name__)

CONNECT_WAIT_STEPS = 1000
CONNECT_WAIT_STEP_SECONDS = 0.005


def requested_last_seq(auth: Any, stream: str) -> int | None:
    """The seq the client last saw on ``stream``: ``lastSeq`` as a number or per stream."""
    last_seq = auth.get("lastSeq") if isinstance(auth, dict) else None
    if isinstance(last_seq, dict):
        last_seq = last_seq.get(stream)
    if isinstance(last_seq, int) and not isinstance(last_seq, bool) and last_seq >= 0:
        return last_seq
    return None


async def catch_up(
    *,
    manager: HoldingManager,
    sessionmaker: async_sessionmaker[AsyncSession],
    sid: str,
    stream: str,
    last_seq: int | None,
    cap: int,
    first: Sequence[tuple[str, Any]] = (),
) -> None:
    """Send ``sid`` the events after ``last_seq`` (at most ``cap``), then ``sync``, then go live.

    ``first`` are (event, data) messages sent before the caught-up events, while the socket is
    still held: a snapshot (of presence, say) that live emits buffered meanwhile then update.

    The socket must be held (``manager.hold``) from before the outbox is read. ``sync`` says
    ``recovered: true`` when the catch-up holds everything the client missed that can be sent;
    with ``false`` (a new client, over the cap, ``missing`` events that are dead or gone with
    retention, a position beyond the head) it must refetch its state. Its ``lastSeq`` is the
    client's position afterwards (docs/delivery.md).
    """
    caught_up: list[tuple[str, str]] = []  # (type, envelope as JSON text)
    sent_ids: set[str] = set()
    recovered, missing, resume_from = False, 0, None
    try:
        async with statement_session(sessionmaker) as session:
            if last_seq is None:
                resume_from = await stream_head(session, stream=stream)
            else:
                page = await events_after(session, stream=stream, after=last_seq, limit=cap)
                recovered, missing = page.complete and not page.has_more, page.missing
                if page.has_more:  # over the cap: refetching is cheaper than catching up
                    resume_from = page.head
                else:
                    caught_up, resume_from = page.envelope_texts(), page.last_seq
                    sent_ids = {event.envelope_id for event, _ in page.events}
    except SQLAlchemyError:
        logger.warning("catch-up failed; the client must refetch", exc_info=True)
    # The connect handler returns before the server acknowledges the connection; anything
    # sent to the socket before that acknowledgement would be dropped by the client.
    for _ in range(CONNECT_WAIT_STEPS):
        if manager.is_connected(sid, "/"):
            break
        await asyncio.sleep(CONNECT_WAIT_STEP_SECONDS)
    else:
        manager.forget(sid)
        return
    for event, data in first:
        await manager.send_direct(sid, event, data)
    await manager.send_encoded(sid, caught_up)
    sync = SyncOut(
        stream=stream,
        recovered=recovered,
        replayed=len(caught_up),
        missing=missing,
        last_seq=resume_from,
    )
    await manager.send_direct(sid, "sync", sync.model_dump(mode="json", by_alias=True))
    metrics.CATCH_UPS.labels("true" if recovered else "false").inc()

    def covered(held: HeldEmit) -> bool:
        _, _, data = held
        return isinstance(data, dict) and data.get("id") in sent_ids

    await manager.release(sid, skip=covered)
