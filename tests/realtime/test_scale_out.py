"""Several web and dispatcher processes at once, with either cross-process manager."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from doubles.socket_clients import SocketRecorder
from tests.events import commit_events
from tests.harness import (
    ManagedProcess,
    Member,
    add_member,
    dispatcher_process,
    signup,
    web_process,
)


@pytest.fixture(params=["postgres", "redis"])
def manager_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment selecting the Socket.IO manager; Redis is shared, so the channel is unique."""
    env = {"APP_SOCKETIO_CHANNEL": f"socketio-{uuid.uuid4().hex[:8]}"}
    if request.param == "redis":
        env["APP_SOCKETIO_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    return env


@pytest.fixture
def cluster(
    database_url: str, log_dir: Path, manager_env: dict[str, str]
) -> Iterator[tuple[list[str], list[ManagedProcess]]]:
    """Two web processes and two dispatchers on one database; yields the web URLs."""
    webs = [web_process(database_url, log_dir, **manager_env) for _ in range(2)]
    dispatchers = [
        dispatcher_process(database_url, log_dir, DISPATCHER_BATCH_SIZE="50", **manager_env)
        for _ in range(2)
    ]
    yield [url for _, url in webs], [proc for proc, _ in webs]
    for proc in [*dispatchers, *(proc for proc, _ in webs)]:
        proc.stop()


def in_order_without_duplicates(envelopes: list[dict[str, object]]) -> list[object]:
    """The seqs a deduplicating client keeps, in arrival order."""
    seen: set[object] = set()
    kept = []
    for envelope in envelopes:
        if envelope["seq"] not in seen:
            seen.add(envelope["seq"])
            kept.append(envelope["seq"])
    return kept


async def test_two_webs_two_dispatchers_deliver_every_event_in_order(
    cluster: tuple[list[str], list[ManagedProcess]], database_url: str
) -> None:
    urls, _ = cluster
    users, per_user = 50, 40
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as api:
        parent = await signup(api, "Ada")
        members = [parent] + [
            await add_member(api, parent, f"Kid{n}", "child") for n in range(users - 1)
        ]
    sockets = [SocketRecorder(urls[n % 2], m.token) for n, m in enumerate(members)]
    for recorder in sockets:
        await recorder.connect()
        await recorder.wait_until(lambda _, r=recorder: bool(r.syncs))
    # Each stream's head when its socket connected (the member.added events before it).
    heads = [recorder.syncs[0]["lastSeq"] for recorder in sockets]
    # Interleaved small transactions from several writers at once.
    for _ in range(per_user // 10):
        await asyncio.gather(
            *(
                commit_events(database_url, m.id, m.family_id, 10, per_transaction=5)
                for m in members
            )
        )
    for member, recorder, head in zip(members, sockets, heads, strict=True):
        await recorder.wait_until(
            lambda _, r=recorder: len(in_order_without_duplicates(r.envelopes())) >= per_user, 60
        )
        expected = list(range(head + 1, head + per_user + 1))
        assert in_order_without_duplicates(recorder.envelopes()) == expected
        assert {e["data"]["affectedUsers"][0] for e in recorder.envelopes()} == {member.id}
    for recorder in sockets:
        await recorder.disconnect()


async def test_web_process_killed_clients_resume_elsewhere_without_gaps(
    cluster: tuple[list[str], list[ManagedProcess]], database_url: str
) -> None:
    urls, webs = cluster
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as api:
        parent = await signup(api, "Ada")
        members: list[Member] = [parent] + [
            await add_member(api, parent, f"Kid{n}", "child") for n in range(4)
        ]
    first = [SocketRecorder(urls[0], m.token) for m in members]
    for recorder in first:
        await recorder.connect()
        await recorder.wait_until(lambda _, r=recorder: bool(r.syncs))
    # Each stream's head when its socket connected (the member.added events before it).
    heads = [recorder.syncs[0]["lastSeq"] for recorder in first]
    total = 100

    async def write() -> None:
        for _ in range(total // 5):
            await asyncio.gather(
                *(commit_events(database_url, m.id, m.family_id, 5) for m in members)
            )
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(write())
    await first[0].wait_until(lambda _: len(first[0].envelopes()) >= 20, 30)
    webs[0].kill()
    resumed = []
    for member, recorder, head in zip(members, first, heads, strict=True):
        async with asyncio.timeout(10):
            await recorder.client.wait()
        seen = [e["seq"] for e in recorder.envelopes()]
        again = SocketRecorder(urls[1], member.token)
        await again.connect(last_seq=max(seen, default=head))
        resumed.append(again)
    await writer
    for recorder, again, head in zip(first, resumed, heads, strict=True):
        await again.wait_until(
            lambda _, r=recorder, a=again: (
                bool(a.syncs)
                and len(in_order_without_duplicates(r.envelopes() + a.envelopes())) >= total
            ),
            60,
        )
        kept = in_order_without_duplicates(recorder.envelopes() + again.envelopes())
        assert kept == list(range(head + 1, head + total + 1))
        assert [s["recovered"] for s in again.syncs] == [True], again.events[:3]
