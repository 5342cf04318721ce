"""A crashed dispatcher's rows come back within seconds; a stalled one stops nobody else."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable

import httpx
import psycopg

from doubles.socket_clients import StreamFollower
from tests.events import commit_events, wait_until_delivered
from tests.harness import ManagedProcess, add_member, signup, stop_while_holding_leases

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


def open_dispatcher_transaction(database_url: str, pid: int) -> int | None:
    """The backend of a delivery transaction of dispatcher ``pid`` open right now, if any."""
    # Not its claim: in a backlog the next claim runs beside the delivery, a statement of its
    # own that commits by itself (a stopped dispatcher's claim finishes, and nothing is left
    # open to cut off).
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND xact_start IS NOT NULL AND state <> 'idle'"
            " AND query NOT LIKE %s",
            (f"dispatcher:{pid}", "%WITH claimable AS%"),
        ).fetchone()
    return None if row is None else int(row[0])


def backend_alive(database_url: str, pid: int) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return row is not None and row[0] == 1


async def test_a_dispatcher_stopped_inside_its_transaction_is_cut_off(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    parent = await signup(api, "Ada")
    children = [await add_member(api, parent, f"Kid{i}", "child") for i in range(6)]
    follower = StreamFollower(web, children[0].token)
    await follower.connect()
    # Many streams, so that both dispatchers are busy delivering, each its own.
    total = 600
    for child in children:
        await commit_events(database_url, child.id, child.family_id, total)
    env = {
        # Claims of 5 rows that do not grow: the dispatchers stay busy long enough to be caught.
        "DISPATCHER_BATCH_SIZE": "5",
        "DISPATCHER_MAX_BATCH_SIZE": "5",
        "DISPATCHER_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": "2",
        "DISPATCHER_STALLED_TRANSACTION_SECONDS": "3",
    }
    stalled, _ = start_dispatcher(**env), start_dispatcher(**env)
    await follower.wait_until(lambda events: len(events) >= 20, 30)
    assert stalled.process is not None
    backend = None
    for _ in range(1000):
        os.kill(stalled.process.pid, signal.SIGSTOP)
        if (backend := open_dispatcher_transaction(database_url, stalled.process.pid)) is not None:
            break
        os.kill(stalled.process.pid, signal.SIGCONT)
        await asyncio.sleep(0.002)
    assert backend is not None, "never caught the dispatcher inside its transaction"
    try:
        # Whatever step it stopped at, its transaction is cut off, and its locks with it: by
        # the server's idle timeout, or by the other dispatcher when the session looks busy.
        deadline = time.monotonic() + 8
        while backend_alive(database_url, backend):
            assert time.monotonic() < deadline, "the stalled transaction was never cut off"
            await asyncio.sleep(0.1)
    finally:
        os.kill(stalled.process.pid, signal.SIGCONT)
    # Kid0's stream also holds the member.added of each sibling added after it.
    siblings_added = len(children) - 1
    await follower.wait_until(lambda events: len(events) == siblings_added + total, 60)
    assert [e["seq"] for e in follower.envelopes()] == list(range(1, siblings_added + total + 1))
    assert follower.duplicates == 0
    await wait_until_delivered(database_url, total * len(children), 60)
