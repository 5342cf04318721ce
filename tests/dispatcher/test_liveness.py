"""A crashed dispatcher's rows come back within seconds; a stalled one stops nobody else."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx

from tests.events import commit_events
from tests.harness import (
    ManagedProcess,
    StreamFollower,
    add_member,
    signup,
    stop_while_holding_leases,
)

# Long enough that waiting it out would fail every deadline below.
LEASE_SECONDS = "30"


async def test_a_killed_dispatchers_rows_are_reclaimed_within_seconds(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    child = await add_member(api, await signup(api, "Ada"), "Kim", "child")
    follower = StreamFollower(web, child.token)
    await follower.connect()
    total = 2000
    await commit_events(database_url, child.id, child.family_id, total)
    env = {"DISPATCHER_BATCH_SIZE": "50", "DISPATCHER_LEASE_SECONDS": LEASE_SECONDS}
    first = start_dispatcher(**env)
    await follower.wait_until(lambda events: len(events) >= 200, 30)
    assert await stop_while_holding_leases(database_url, first, only_dispatcher=True) > 0
    first.kill()

    started = time.monotonic()
    second = start_dispatcher(**env)
    await follower.wait_until(lambda events: len(events) == total, 15)
    assert time.monotonic() - started < 15
    assert "expired the leases of a dispatcher that is gone" in second.log()
    assert [e["seq"] for e in follower.envelopes()] == list(range(1, total + 1))
    assert follower.duplicates == 0
    second.stop()


async def test_a_stalled_dispatcher_stops_no_other_stream(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    parent = await signup(api, "Ada")
    busy = await add_member(api, parent, "Kim", "child")
    other = await add_member(api, parent, "Lou", "child")
    busy_follower = StreamFollower(web, busy.token)
    other_follower = StreamFollower(web, other.token)
    await busy_follower.connect()
    await other_follower.connect()
    env = {"DISPATCHER_BATCH_SIZE": "20", "DISPATCHER_LEASE_SECONDS": "12"}
    stalled, running = (start_dispatcher(**env) for _ in range(2))
    total = 2000
    await commit_events(database_url, busy.id, busy.family_id, total)
    await busy_follower.wait_until(lambda events: len(events) >= 100, 30)
    assert stalled.process is not None
    await stop_while_holding_leases(database_url, stalled)
    try:
        # The stalled dispatcher holds some of the busy stream's rows (and perhaps an open
        # transaction with its stream locks): every other stream still flows at once.
        await commit_events(database_url, other.id, other.family_id, 50, per_transaction=1)
        await other_follower.wait_until(lambda events: len(events) == 50, 8)
    finally:
        os.kill(stalled.process.pid, signal.SIGCONT)
    await busy_follower.wait_until(lambda events: len(events) == total, 60)
    # Fencing kept the stalled dispatcher from finishing rows it had lost: no duplicates, and
    # the busy stream kept its order.
    assert [e["seq"] for e in busy_follower.envelopes()] == list(range(1, total + 1))
    assert busy_follower.duplicates == other_follower.duplicates == 0
    assert [e["seq"] for e in other_follower.envelopes()] == list(range(1, 51))
    for proc in (stalled, running):
        assert proc.stop() == 0
