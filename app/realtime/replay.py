"""Replay on reconnect: a socket gets what it missed from the outbox before live events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.outbox.replay import events_after, stream_head
from app.realtime.holding import HeldEmit, HoldingManager

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
) -> None:
    """Send ``sid`` the events after ``last_seq`` (at most ``cap``), then ``sync``, then go live.

    ``sync`` says ``recovered: true`` when the replay holds everything the client missed; with
    ``false`` (a new client, over the cap, events gone with retention) it must refetch its state.
    Its ``lastSeq`` is where the client stands afterwards.
    """
    replayed: list[dict[str, Any]] = []
    resume_from: int | None
    try:
        async with sessionmaker() as session:
            if last_seq is None:
                recovered, resume_from = False, await stream_head(session, stream=stream)
            else:
                page = await events_after(session, stream=stream, after=last_seq, limit=cap)
                recovered, resume_from = page.complete, page.last_seq
                if page.complete:
                    replayed = page.envelopes
                elif page.has_more:
                    resume_from = page.head
    except SQLAlchemyError:
        logger.warning("replay failed; the client must refetch", exc_info=True)
        recovered, resume_from = False, None
    # The connect handler returns before the server acknowledges the connection; anything
    # sent to the socket before that acknowledgement would be dropped by the client.
    for _ in range(CONNECT_WAIT_STEPS):
        if manager.is_connected(sid, "/"):
            break
        await asyncio.sleep(CONNECT_WAIT_STEP_SECONDS)
    else:
        manager.forget(sid)
        return
    for envelope in replayed:
        await manager.send_direct(sid, envelope["type"], envelope)
    sync = {
        "stream": stream,
        "recovered": recovered,
        "replayed": len(replayed),
        "lastSeq": resume_from,
    }
    await manager.send_direct(sid, "sync", sync)

    def covered(held: HeldEmit) -> bool:
        room, _, data = held
        seq = data.get("seq") if isinstance(data, dict) else None
        return (
            room == stream
            and resume_from is not None
            and isinstance(seq, int)
            and seq <= resume_from
        )

    await manager.release(sid, skip=covered)
