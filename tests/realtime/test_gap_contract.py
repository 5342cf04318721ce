"""The gap contract (docs/delivery.md): every stream gap-free, or the client is told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import psycopg

from doubles.socket_clients import SocketRecorder
from tests.events import FutureTaskDeleted, commit_events, outbox_statuses, wait_until_delivered
from tests.harness import ManagedProcess, child_of_new_family, outbox_cli


async def wait_for_status(database_url: str, status: str, count: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while (await asyncio.to_thread(outbox_statuses, database_url)).get(status, 0) < count:
        assert time.monotonic() < deadline, await asyncio.to_thread(outbox_statuses, database_url)
        await asyncio.sleep(0.05)


def fix_future_versions(database_url: str) -> list[int]:
    """The operator's fix of a rolling deploy: the new version turns out to be known."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "UPDATE outbox_events SET version = 1 WHERE version = 2 RETURNING id"
        ).fetchall()
    return [row[0] for row in rows]


async def test_a_dead_event_is_never_skipped_silently(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    child = await child_of_new_family(api)
    live = SocketRecorder(web, child.token)
    await live.connect()
    await live.wait_until(lambda _: len(live.syncs) == 1)
    start_dispatcher(DISPATCHER_MAX_ATTEMPTS="3")
    # seq 1 cannot be delivered by this dispatcher (a newer writer's version); seqs 2-4 can.
    await commit_events(database_url, child.id, child.family_id, 1, payload_type=FutureTaskDeleted)
    await commit_events(database_url, child.id, child.family_id, 3)
    await wait_for_status(database_url, "dead", 1)
    await live.wait_until(lambda _: len(live.envelopes()) == 3)
    # Per-stream order held while seq 1 was retried; its death is announced to the stream.
    assert [e["seq"] for e in live.envelopes()] == [2, 3, 4]
    told = {"stream": f"user:{child.id}", "reason": "dead"}
    await live.wait_until(lambda _: told in live.resyncs)
    answer = await live.request_sync(0)
    assert answer == {"ok": True}
    await live.wait_until(lambda _: len(live.syncs) == 2)
    assert live.syncs[-1] == {
        "stream": f"user:{child.id}",
        "recovered": False,
        "replayed": 3,
        "missing": 1,
        "lastSeq": 4,
    }

    # A client that was away is told as well, on the socket and over REST.
    away = SocketRecorder(web, child.token)
    await away.connect(last_seq=0)
    await away.wait_until(lambda _: len(away.syncs) == 1)
    assert [e["seq"] for e in away.envelopes()] == [2, 3, 4]
    assert (away.syncs[0]["recovered"], away.syncs[0]["missing"]) == (False, 1)
    page = (await api.get("/v1/events?after=0", headers=child.headers)).json()
    assert [e["seq"] for e in page["events"]] == [2, 3, 4]
    assert (page["complete"], page["missing"], page["lastSeq"]) == (False, 1, 4)

    # Fixed and replayed by the operator: the late event reaches the live client, and a
    # client still behind it gets the whole stream back.
    [dead_id] = await asyncio.to_thread(fix_future_versions, database_url)
    assert (
        await asyncio.to_thread(outbox_cli, database_url, "replay", str(dead_id))
    ).returncode == 0
    await live.wait_until(lambda _: any(e["seq"] == 1 for e in live.envelopes()))
    again = SocketRecorder(web, child.token)
    await again.connect(last_seq=0)
    await again.wait_until(lambda _: len(again.syncs) == 1)
    assert [e["seq"] for e in again.envelopes()] == [1, 2, 3, 4]
    assert again.syncs[0] == {
        "stream": f"user:{child.id}",
        "recovered": True,
        "replayed": 4,
        "missing": 0,
        "lastSeq": 4,
    }


async def test_a_late_event_is_caught_up_and_the_position_waits_for_it(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    child = await child_of_new_family(api)
    # The stream is held behind a failing event for one second only, then later ones go ahead.
    start_dispatcher(
        DISPATCHER_MAX_ATTEMPTS="1000",
        DISPATCHER_STREAM_HOLD_SECONDS="1",
    )
    await commit_events(database_url, child.id, child.family_id, 1, payload_type=FutureTaskDeleted)
    await commit_events(database_url, child.id, child.family_id, 3)
    await wait_for_status(database_url, "delivered", 3)

    # seq 1 is still on its way: the catch-up sends 2-4, but the client's position stays at 0.
    early = SocketRecorder(web, child.token)
    await early.connect(last_seq=0)
    await early.wait_until(lambda _: len(early.syncs) == 1)
    assert [e["seq"] for e in early.envelopes()] == [2, 3, 4]
    assert early.syncs[0] == {
        "stream": f"user:{child.id}",
        "recovered": True,
        "replayed": 3,
        "missing": 0,
        "lastSeq": 0,
    }
    await asyncio.to_thread(fix_future_versions, database_url)
    # Delivered late, it reaches the connected client live...
    await early.wait_until(lambda _: len(early.envelopes()) == 4, 20)
    assert early.envelopes()[-1]["seq"] == 1
    # ...and a client reconnecting from the same position gets it in seq order.
    later = SocketRecorder(web, child.token)
    await later.connect(last_seq=0)
    await later.wait_until(lambda _: len(later.syncs) == 1)
    assert [e["seq"] for e in later.envelopes()] == [1, 2, 3, 4]
    assert (later.syncs[0]["recovered"], later.syncs[0]["lastSeq"]) == (True, 4)


async def test_retention_never_hides_a_hole(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    child = await child_of_new_family(api)
    start_dispatcher(DISPATCHER_MAX_ATTEMPTS="1")
    await commit_events(database_url, child.id, child.family_id, 1, payload_type=FutureTaskDeleted)
    await wait_for_status(database_url, "dead", 1)
    await commit_events(database_url, child.id, child.family_id, 31)
    await wait_until_delivered(database_url, 31)
    # Retention purges the delivered rows; the dead one stays for the operator.
    purged = await asyncio.to_thread(outbox_cli, database_url, "purge", "--older-than", "0s")
    assert purged.returncode == 0, purged.stderr
    assert await asyncio.to_thread(outbox_statuses, database_url) == {"dead": 1}

    back = SocketRecorder(web, child.token)
    await back.connect(last_seq=0)
    await back.wait_until(lambda _: len(back.syncs) == 1)
    assert back.envelopes() == []
    assert back.syncs[0] == {
        "stream": f"user:{child.id}",
        "recovered": False,
        "replayed": 0,
        "missing": 32,
        "lastSeq": 32,
    }
    page = (await api.get("/v1/events?after=1", headers=child.headers)).json()
    assert (page["events"], page["complete"], page["missing"]) == ([], False, 31)
    # Nothing is missing after the head.
    current = (await api.get("/v1/events?after=32", headers=child.headers)).json()
    assert (current["complete"], current["missing"], current["lastSeq"]) == (True, 0, 32)


async def test_a_position_beyond_the_head_is_not_recovered(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    child = await child_of_new_family(api)
    start_dispatcher()
    await commit_events(database_url, child.id, child.family_id, 3)
    await wait_until_delivered(database_url, 3)
    # The client saw seq 9 of a database that was since restored from an older backup.
    ahead = SocketRecorder(web, child.token)
    await ahead.connect(last_seq=9)
    await ahead.wait_until(lambda _: len(ahead.syncs) == 1)
    assert ahead.syncs[0]["recovered"] is False
    assert ahead.syncs[0]["lastSeq"] == 3
    page = (await api.get("/v1/events?after=9", headers=child.headers)).json()
    assert (page["complete"], page["lastSeq"]) == (False, 3)
    # From the head it was given, the next event continues the stream.
    await commit_events(database_url, child.id, child.family_id, 1)
    await ahead.wait_until(lambda _: len(ahead.envelopes()) == 1)
    assert ahead.envelopes()[0]["seq"] == 4
