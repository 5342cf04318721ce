"""Reconnect without loss: a catch-up from the outbox on connect, and the same over REST."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from doubles.socket_clients import SocketRecorder
from tests.events import commit_events, wait_until_delivered
from tests.harness import ManagedProcess, add_member, child_of_new_family, signup, web_process


async def test_reconnect_catches_up_exactly_what_was_missed(
    api: httpx.AsyncClient, web: str, database_url: str, dispatcher: ManagedProcess
) -> None:
    child = await child_of_new_family(api)
    first = SocketRecorder(web, child.token)
    await first.connect()
    await first.wait_until(lambda _: len(first.syncs) >= 1)
    assert first.syncs == [
        {
            "stream": f"user:{child.id}",
            "recovered": False,
            "replayed": 0,
            "missing": 0,
            "lastSeq": 0,
        }
    ]
    await commit_events(database_url, child.id, child.family_id, 5)
    await first.wait_until(lambda _: len(first.envelopes()) == 5)
    await first.disconnect()

    # 200 events committed and delivered while the client is away.
    await commit_events(database_url, child.id, child.family_id, 200)
    await wait_until_delivered(database_url, 205)

    again = SocketRecorder(web, child.token)
    await again.connect(last_seq=5)
    await again.wait_until(lambda _: len(again.syncs) == 1)
    names = [name for name, _ in again.received]
    assert names == ["presence.snapshot"] + ["task.deleted"] * 200 + ["sync"]
    assert [e["seq"] for e in again.envelopes()] == list(range(6, 206))
    assert again.syncs == [
        {
            "stream": f"user:{child.id}",
            "recovered": True,
            "replayed": 200,
            "missing": 0,
            "lastSeq": 205,
        }
    ]
    # Live events follow the catch-up.
    await commit_events(database_url, child.id, child.family_id, 1)
    await again.wait_until(lambda _: len(again.envelopes()) == 201)
    assert again.envelopes()[-1]["seq"] == 206


async def test_over_the_cap_the_client_must_refetch(
    api: httpx.AsyncClient, database_url: str, log_dir: Path, dispatcher: ManagedProcess
) -> None:
    proc, base_url = await asyncio.to_thread(
        web_process, database_url, log_dir, APP_CATCH_UP_CAP="50"
    )
    try:
        async with httpx.AsyncClient(base_url=base_url) as client:
            child = await child_of_new_family(client)
        await commit_events(database_url, child.id, child.family_id, 60)
        await wait_until_delivered(database_url, 60)

        behind = SocketRecorder(base_url, child.token)
        await behind.connect(last_seq=5)
        await behind.wait_until(lambda _: len(behind.syncs) == 1)
        assert behind.envelopes() == []
        assert behind.syncs == [
            {
                "stream": f"user:{child.id}",
                "recovered": False,
                "replayed": 0,
                "missing": 0,
                "lastSeq": 60,
            }
        ]
    finally:
        proc.stop()


async def test_rest_catch_up_pages_through_the_own_stream_only(
    api: httpx.AsyncClient, web: str, database_url: str, dispatcher: ManagedProcess
) -> None:
    child = await child_of_new_family(api)
    sibling = await add_member(api, await signup(api, "Bob"), "Zed", "child")
    recorder = SocketRecorder(web, child.token)
    await recorder.connect()
    await commit_events(database_url, child.id, child.family_id, 30)
    await commit_events(database_url, sibling.id, sibling.family_id, 3)
    await recorder.wait_until(lambda _: len(recorder.envelopes()) == 30)

    page = (await api.get("/v1/events?after=10&limit=15", headers=child.headers)).json()
    assert [e["seq"] for e in page["events"]] == list(range(11, 26))
    assert (page["hasMore"], page["complete"], page["lastSeq"]) == (True, True, 25)
    assert page["events"] == recorder.envelopes()[10:25]
    rest = (await api.get("/v1/events?after=25", headers=child.headers)).json()
    assert [e["seq"] for e in rest["events"]] == list(range(26, 31))
    assert (rest["hasMore"], rest["lastSeq"]) == (False, 30)
    theirs = (await api.get("/v1/events", headers=sibling.headers)).json()
    assert theirs["stream"] == f"user:{sibling.id}"
    assert all(e["data"]["affectedUsers"] == [sibling.id] for e in theirs["events"])
    bad = await api.get("/v1/events?after=-1", headers=child.headers)
    assert bad.status_code == 422
