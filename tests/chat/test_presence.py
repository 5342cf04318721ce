"""Presence across web processes: first connect / last disconnect, visibility, crashed nodes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.realtime.presence import PRESENCE_LOCK_NAMESPACE, users_with_visible_app
from doubles.socket_clients import DEADLINE_SECONDS, SocketRecorder
from tests.harness import ManagedProcess, Member, add_member, connected, signup, web_process


def changes(recorder: SocketRecorder) -> list[tuple[str, bool]]:
    """The `presence.changed` signals received (ephemeral: not among the outbox events)."""
    return [
        (d["userId"], d["online"]) for name, d in recorder.received if name == "presence.changed"
    ]


def presence_of(recorder: SocketRecorder, observer: Member) -> list[tuple[str, bool]]:
    """What ``observer``'s socket heard of the presence of others."""
    # Whether a socket also hears of its own user's arrival is not what these tests are about.
    return [change for change in changes(recorder) if change[0] != observer.id]


async def saw(recorder: SocketRecorder, change: tuple[str, bool]) -> None:
    await recorder.wait_until(lambda _: change in changes(recorder))


async def count_rows(database_url: str, query: str, *params: object) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    count: int = row[0]
    return count


async def socket_rows(database_url: str, member: Member) -> int:
    query = "SELECT count(*) FROM presence_sockets WHERE user_id = %s"
    return await count_rows(database_url, query, member.id)


async def wait_for_no_socket_rows(database_url: str, member: Member) -> None:
    """Poll until every socket of ``member`` is gone from the table (its handlers have run)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while await socket_rows(database_url, member):
        assert time.monotonic() < deadline, "presence rows were never removed"
        await asyncio.sleep(0.05)  # poll interval


@pytest.fixture
def second_web(database_url: str, log_dir: Path) -> Iterator[str]:
    """Another web process on the same database."""
    proc, base_url = web_process(database_url, log_dir)
    yield base_url
    proc.stop()


async def visible(sessions: async_sessionmaker[AsyncSession], *members: Member) -> set[str]:
    async with sessions() as session:
        found = await users_with_visible_app(session, [uuid.UUID(m.id) for m in members])
    return {str(user_id) for user_id in found}


async def set_visibility(recorder: SocketRecorder, visible: bool) -> None:
    ack: dict[str, Any] = await recorder.client.call(
        "app.visibility", {"visible": visible}, timeout=DEADLINE_SECONDS
    )
    assert ack == {"ok": True}


async def test_presence_on_first_connect_and_last_disconnect_across_processes(
    api: httpx.AsyncClient,
    web: str,
    second_web: str,
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
) -> None:
    parent = await signup(api, "Ada")
    kid = await add_member(api, parent, "Kim", "child")
    marker = await add_member(api, parent, "Ida", "child")
    stranger = await signup(api, "Zed")
    observer = await connected(web, parent)
    outsider = await connected(web, stranger)

    # Kim's first socket is on the other process; the observer hears of it all the same.
    kim_there = await connected(second_web, kid)
    await saw(observer, (kid.id, True))
    # Kim's second socket, on the observer's process, is not news.
    kim_here = await connected(web, kid)
    # Ida comes online after it: by the time her arrival is heard, a second "Kim online" would
    # have been heard before it.
    ida = await connected(second_web, marker)
    await saw(observer, (marker.id, True))
    assert presence_of(observer, parent) == [(kid.id, True), (marker.id, True)]

    # Visibility: a user counts as looking at the app while any live socket of theirs is visible.
    everyone = {parent.id, kid.id, marker.id, stranger.id}
    assert await visible(sessions, parent, kid, marker, stranger) == everyone
    await set_visibility(kim_there, False)
    assert await visible(sessions, kid) == {kid.id}
    await set_visibility(kim_here, False)
    assert await visible(sessions, kid, marker) == {marker.id}
    await set_visibility(kim_there, True)
    assert await visible(sessions, kid) == {kid.id}

    # Closing one of Kim's sockets is not news; closing the last one is.
    await kim_there.disconnect()
    await kim_here.disconnect()
    await saw(observer, (kid.id, False))
    await wait_for_no_socket_rows(database_url, kid)  # both disconnect handlers have finished
    await ida.disconnect()
    await saw(observer, (marker.id, False))
    # The announcement goes out just before the row's deletion commits.
    await wait_for_no_socket_rows(database_url, marker)
    assert presence_of(observer, parent) == [
        (kid.id, True),
        (marker.id, True),
        (kid.id, False),
        (marker.id, False),
    ]
    assert await visible(sessions, kid, marker) == set()
    # Another family hears nothing of it.
    assert presence_of(outsider, stranger) == []
    await observer.disconnect()
    await outsider.disconnect()


async def test_sockets_of_a_crashed_process_go_offline(
    database_url: str,
    log_dir: Path,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fast = {"APP_PRESENCE_HEARTBEAT_SECONDS": "0.5", "APP_PRESENCE_STALE_SECONDS": "3"}
    survivor, survivor_url = await asyncio.to_thread(web_process, database_url, log_dir, **fast)
    doomed: ManagedProcess | None = None
    try:
        async with httpx.AsyncClient(base_url=survivor_url, timeout=10) as api:
            parent = await signup(api, "Ada")
            kid = await add_member(api, parent, "Kim", "child")
        observer = await connected(survivor_url, parent)
        doomed, doomed_url = await asyncio.to_thread(web_process, database_url, log_dir, **fast)
        await connected(doomed_url, kid)
        await saw(observer, (kid.id, True))
        assert await visible(sessions, kid) == {kid.id}

        doomed.kill()  # no disconnect handler runs: only the missed heartbeats tell
        await saw(observer, (kid.id, False))
        assert await visible(sessions, kid) == set()
        assert await socket_rows(database_url, kid) == 0
        # The survivor's own node row is left; the crashed node's was reaped.
        assert await count_rows(database_url, "SELECT count(*) FROM realtime_nodes") == 1
        assert presence_of(observer, parent) == [(kid.id, True), (kid.id, False)]
        await observer.disconnect()
    finally:
        survivor.stop()
        if doomed is not None:
            doomed.stop()


async def test_a_socket_whose_removal_failed_is_removed_at_the_next_heartbeat(
    database_url: str, log_dir: Path
) -> None:
    # The fault: the disconnect handler's transaction dies (here: its backend is terminated
    # while it waits for the user's lock), as it does when thousands of sockets close at once
    # and the removals time out waiting for the pool. The node lives on and heartbeats.
    fast = {"APP_PRESENCE_HEARTBEAT_SECONDS": "0.5", "APP_PRESENCE_STALE_SECONDS": "3"}
    proc, url = await asyncio.to_thread(web_process, database_url, log_dir, **fast)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            parent = await signup(api, "Ada")
            kid = await add_member(api, parent, "Kim", "child")
        observer = await connected(url, parent)
        kim = await connected(url, kid)
        await saw(observer, (kid.id, True))
        lock = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
        async with await psycopg.AsyncConnection.connect(database_url) as holder:
            await holder.execute(lock, (PRESENCE_LOCK_NAMESPACE, kid.id))
            await kim.disconnect()
            waiting = await wait_for_lock_waiter(database_url)
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                await c.execute("SELECT pg_terminate_backend(%s)", (waiting,))
            await holder.rollback()
        await saw(observer, (kid.id, False))
        assert await socket_rows(database_url, kid) == 0
        await observer.disconnect()
    finally:
        proc.stop()


async def wait_for_lock_waiter(database_url: str) -> int:
    """The pid of the backend waiting for an advisory lock (the disconnect handler's)."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while (row := await (await conn.execute(query)).fetchone()) is None:
            assert time.monotonic() < deadline, "the disconnect never waited for the lock"
            await asyncio.sleep(0.05)  # poll interval
    pid: int = row[0]
    return pid
