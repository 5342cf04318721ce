"""A live hand-off that was lost is made up: no row is delivered into the void for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from doubles.socket_clients import StreamFollower
from tests.events import commit_events, wait_until_delivered
from tests.harness import ManagedProcess, add_member, signup, terminate_listeners, web_process
from tests.throwaway import ThrowawayRedis


def rows_that_failed_before_delivery(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox_events"
            " WHERE status = 'delivered' AND jsonb_array_length(errors) > 0"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_lost_manager_listener_makes_its_sockets_catch_up(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    follower = StreamFollower(web, child.token)
    await follower.connect()
    start_dispatcher()
    await commit_events(database_url, child.id, child.family_id, 5)
    await follower.wait_until(lambda events: len(events) == 5)

    deadline = time.monotonic() + 10
    while await asyncio.to_thread(terminate_listeners, database_url, "socketio") != 1:
        assert time.monotonic() < deadline, "no manager LISTEN connection to kill"
        await asyncio.sleep(0.05)
    # Delivered while the web process is not listening: these emits reach nobody live.
    await commit_events(database_url, child.id, child.family_id, 20, per_transaction=1)
    await wait_until_delivered(database_url, 25)
    await follower.wait_until(lambda events: len(events) == 25, 20)
    assert follower.resyncs, "the socket was never told its live events may have a hole"
    assert [e["seq"] for e in follower.envelopes()] == list(range(1, 26))
    assert (follower.position, follower.duplicates, follower.refetches) == (25, 0, 1)
    # The web process's metrics saw it all: the channel is back, the resync went out.
    metrics = (await api.get("/metrics")).text
    assert "realtime_manager_channel_up 1.0" in metrics
    assert 'realtime_resyncs_total{reason="channel_lost"}' in metrics
    assert 'realtime_catch_ups_total{recovered="true"} 1.0' in metrics
    assert "realtime_sockets 1.0" in metrics
    # The socket's own rooms: its user stream and its family.
    assert "realtime_rooms 2.0" in metrics


async def test_redis_outage_delays_but_never_loses_events(
    database_url: str,
    log_dir: Path,
    tmp_path: Path,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    with ThrowawayRedis(tmp_path) as redis:
        env = {"APP_SOCKETIO_REDIS_URL": redis.url}
        web, base_url = await asyncio.to_thread(web_process, database_url, log_dir, **env)
        start_dispatcher(**env)
        try:
            async with httpx.AsyncClient(base_url=base_url) as api:
                child = await add_member(api, await signup(api, "Ada"), "Kim", "child")
            follower = StreamFollower(base_url, child.token)
            await follower.connect()
            await commit_events(database_url, child.id, child.family_id, 5)
            await follower.wait_until(lambda events: len(events) == 5)

            redis.stop()
            await commit_events(database_url, child.id, child.family_id, 20, per_transaction=1)
            await asyncio.sleep(2)
            redis.start()
            await follower.wait_until(lambda events: len(events) == 25, 30)
            assert [e["seq"] for e in follower.envelopes()] == list(range(1, 26))
            assert follower.position == 25
            await wait_until_delivered(database_url, 25)
            # The dispatcher did not take a failed publish for a hand-off: it recorded failed
            # attempts, and delivered the rows on a later one.
            assert rows_that_failed_before_delivery(database_url) > 0
        finally:
            web.stop()
