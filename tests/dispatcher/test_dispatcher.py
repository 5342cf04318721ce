"""The dispatcher process under faults: kills, competition, lost notifications, poison rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from app.outbox import queries
from app.realtime.holding import create_client_manager
from app.settings import Settings
from dispatcher.liveness import LIVENESS_LOCK_CLASS, Liveness
from dispatcher.settings import DispatcherSettings
from dispatcher.worker import Worker
from doubles.socket_clients import SocketRecorder
from tests.events import FutureTaskDeleted, commit_events, outbox_statuses, wait_until_delivered
from tests.harness import (
    TEST_JWT_SECRET,
    ManagedProcess,
    add_member,
    connected,
    dispatcher_process,
    free_port,
    outbox_cli,
    run_sql,
    signup,
    terminate_listeners,
)


def received_ids(recorder: SocketRecorder) -> set[str]:
    return {envelope["id"] for _, envelope in recorder.events}


async def listening_child(api: httpx.AsyncClient, web: str) -> tuple[Any, SocketRecorder]:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    recorder = SocketRecorder(web, child.token)
    await recorder.connect()
    return child, recorder


async def test_sigkill_mid_backlog_loses_nothing(
    api: httpx.AsyncClient, web: str, database_url: str, log_dir: Path
) -> None:
    child, recorder = await listening_child(api, web)
    total = 3000
    await commit_events(database_url, child.id, child.family_id, total)

    first = await asyncio.to_thread(
        dispatcher_process, database_url, log_dir, DISPATCHER_BATCH_SIZE="50"
    )
    await recorder.wait_until(lambda events: len(events) >= 300)
    first.kill()
    assert len(received_ids(recorder)) < total, "the kill came too late to prove anything"

    second = await asyncio.to_thread(
        dispatcher_process, database_url, log_dir, DISPATCHER_BATCH_SIZE="50"
    )
    await recorder.wait_until(lambda events: len({e["id"] for _, e in events}) >= total, 60)
    assert second.stop() == 0
    assert "dispatcher worker stopped" in second.log()

    assert len(received_ids(recorder)) == total
    # A duplicate is the same event again: same id, same place in the stream.
    seq_of: dict[str, int] = {}
    for _, envelope in recorder.events:
        assert seq_of.setdefault(envelope["id"], envelope["seq"]) == envelope["seq"]
    assert sorted(seq_of.values()) == list(range(1, total + 1))
    assert await asyncio.to_thread(outbox_statuses, database_url) == {"delivered": total}


async def delivered_by(metrics_ports: list[int], total: int) -> list[int]:
    """How many events each dispatcher marked delivered (its Prometheus counter), once they
    add up to ``total`` (each counts right after its delivery transaction commits)."""
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(10):
        while True:
            counts = []
            for port in metrics_ports:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                counts.append(
                    sum(
                        int(float(line.rsplit(" ", 1)[1]))
                        for line in text.splitlines()
                        if line.startswith('outbox_delivered_total{type="task.deleted"}')
                    )
                )
            if sum(counts) >= total:
                return counts
            await asyncio.sleep(0.1)


async def test_two_dispatchers_share_a_backlog_without_duplicates(
    api: httpx.AsyncClient, web: str, database_url: str, log_dir: Path
) -> None:
    child, recorder = await listening_child(api, web)
    total = 3000
    ports = [free_port(), free_port()]
    dispatchers = [
        await asyncio.to_thread(
            dispatcher_process,
            database_url,
            log_dir,
            DISPATCHER_BATCH_SIZE="20",
            DISPATCHER_METRICS_PORT=str(port),
        )
        for port in ports
    ]
    await commit_events(database_url, child.id, child.family_id, total)
    await recorder.wait_until(lambda events: len(events) >= total, 60)
    await wait_until_delivered(database_url, total)
    delivered = await delivered_by(ports, total)
    for proc in dispatchers:
        assert proc.stop() == 0
    ids = [envelope["id"] for _, envelope in recorder.events]
    assert len(ids) == len(set(ids)) == total
    # Competing dispatchers still hand over one stream's events in seq order.
    assert [envelope["seq"] for _, envelope in recorder.events] == list(range(1, total + 1))
    # Both took part, and each event was handed over by one of them only.
    assert all(count > 0 for count in delivered), delivered
    assert sum(delivered) == total, delivered
    assert await asyncio.to_thread(outbox_statuses, database_url) == {"delivered": total}


async def test_missed_notification_is_made_up_by_the_rescan(
    api: httpx.AsyncClient, web: str, database_url: str, log_dir: Path
) -> None:
    child, recorder = await listening_child(api, web)
    # Polling so slow that only the rescan after the listener reconnects can deliver in time.
    dispatcher = await asyncio.to_thread(
        dispatcher_process, database_url, log_dir, DISPATCHER_POLL_INTERVAL_SECONDS="120"
    )
    await commit_events(database_url, child.id, child.family_id, 1)
    await recorder.wait_until(lambda events: len(events) == 1)

    deadline = time.monotonic() + 10
    while await asyncio.to_thread(terminate_listeners, database_url, "outbox_events") != 1:
        assert time.monotonic() < deadline, "no LISTEN connection to terminate"
        await asyncio.sleep(0.05)
    # Committed while the listener is down: its NOTIFY reaches nobody.
    await commit_events(database_url, child.id, child.family_id, 1)
    await recorder.wait_until(lambda events: len(events) == 2, 20)
    dispatcher.wait_for_log("LISTEN connection lost")
    dispatcher.stop()


async def test_polling_alone_delivers_when_notify_is_off(
    api: httpx.AsyncClient, web: str, database_url: str, dispatcher: ManagedProcess
) -> None:
    child, recorder = await listening_child(api, web)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute('LISTEN "outbox_events"')
        await commit_events(database_url, child.id, child.family_id, 5, notify=False)
        await recorder.wait_until(lambda events: len(events) == 5)
        # Nothing woke the dispatcher: no notification went out on its channel, so its polling
        # found the rows.
        assert [n async for n in listener.notifies(timeout=0.5)] == []
    assert [envelope["seq"] for envelope in recorder.envelopes()] == [1, 2, 3, 4, 5]
    assert await asyncio.to_thread(outbox_statuses, database_url) == {"delivered": 5}


async def test_a_batch_waits_for_an_earlier_event_in_flight_elsewhere(
    api: httpx.AsyncClient,
    web: str,
    database_url: str,
    start_dispatcher: Callable[..., ManagedProcess],
) -> None:
    parent = await signup(api, "Ada")
    kim = await add_member(api, parent, "Kim", "child")
    lou = await add_member(api, parent, "Lou", "child")
    kim_socket, lou_socket = await connected(web, kim), await connected(web, lou)
    # The family's own events (member.added) out of the way first.
    first = await asyncio.to_thread(start_dispatcher)
    await wait_until_all_delivered(database_url)
    first.stop()
    await commit_events(database_url, kim.id, kim.family_id, 2, notify=False)
    await commit_events(database_url, lou.id, lou.family_id, 1, notify=False)
    # Kim's first event is in flight on another dispatcher for ten more seconds (time for this
    # dispatcher to start and deliver Lou's, on a slow machine). That dispatcher is alive: it
    # holds its liveness lock, else this one would expire its lease at once.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as elsewhere:
        await elsewhere.execute(
            queries.TAKE_LIVENESS_LOCK,
            {"lock_class": LIVENESS_LOCK_CLASS, "owner": "elsewhere"},
        )
        await run_sql(
            database_url,
            "UPDATE outbox_events SET claimed_by = 'elsewhere', claim_token = gen_random_uuid(),"
            " lease_expires_at = now() + interval '10 seconds', attempts = 1"
            " WHERE id = (SELECT min(id) FROM outbox_events WHERE status = 'pending')",
        )
        await asyncio.to_thread(start_dispatcher)
        # One batch claims Kim's second event and Lou's: Lou's goes out; Kim's must not
        # overtake her first (it is marked delivered with the batch, then that mark is taken
        # back).
        await lou_socket.wait_until(lambda _: len(tasks_of(lou_socket)) == 1)
        assert await asyncio.to_thread(outbox_statuses, database_url) == {
            "delivered": 1,
            "pending": 2,
        }
        assert tasks_of(kim_socket) == []
    # The lease runs out; both of Kim's go out, in order.
    await kim_socket.wait_until(lambda _: len(tasks_of(kim_socket)) == 2, 40)
    seqs = [envelope["seq"] for envelope in kim_socket.envelopes()]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_a_row_whose_lease_was_taken_mid_batch_holds_back_its_streams(
    api: httpx.AsyncClient, database_url: str
) -> None:
    """A dispatcher paused past its lease resumes its delivery: a row of its batch that another
    dispatcher has claimed since must hold back the batch's later events of its streams."""
    parent = await signup(api, "Ada")
    await commit_events(database_url, parent.id, parent.family_id, 2, notify=False)
    settings = Settings(environment="test", database_url=database_url, jwt_secret=TEST_JWT_SECRET)
    pool = AsyncConnectionPool(database_url, kwargs={"autocommit": True}, open=False)
    async with pool:
        worker = Worker(
            pool=pool,
            manager=create_client_manager(settings, write_only=True),
            settings=DispatcherSettings(),
            wake=asyncio.Event(),
            liveness=Liveness(database_url, interval_seconds=1, stalled_transaction_seconds=5),
        )
        claim = await worker._claim(uuid.uuid4(), 100)
        first, second = [e.id for e in claim.batch if e.type == "task.deleted"]
        # Meanwhile the first task event was claimed again elsewhere (as after a lost lease).
        await run_sql(
            database_url,
            "UPDATE outbox_events SET claimed_by = 'elsewhere', claim_token = gen_random_uuid()"
            f" WHERE id = {first}",
        )
        held_back = await worker._handle(claim.batch, claim.token)
    statuses = dict(await run_sql(database_url, "SELECT id, status FROM outbox_events"))
    assert (statuses[first], statuses[second]) == ("pending", "pending")
    assert held_back == 1
    assert list(statuses.values()).count("delivered") == len(claim.batch) - 2


def tasks_of(recorder: SocketRecorder) -> list[dict[str, Any]]:
    """The events ``commit_events`` wrote that ``recorder`` received."""
    return [e for e in recorder.envelopes() if e["type"] == "task.deleted"]


async def wait_until_all_delivered(database_url: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    query = "SELECT count(*) FROM outbox_events WHERE status <> 'delivered'"
    while (await run_sql(database_url, query))[0][0]:
        assert time.monotonic() < deadline, "the family's events were never delivered"
        await asyncio.sleep(0.05)


async def test_poison_event_dies_without_blocking_others_and_replay_delivers_it(
    api: httpx.AsyncClient, web: str, database_url: str, log_dir: Path
) -> None:
    child, recorder = await listening_child(api, web)
    dispatcher = await asyncio.to_thread(
        dispatcher_process, database_url, log_dir, DISPATCHER_MAX_ATTEMPTS="3"
    )
    await commit_events(database_url, child.id, child.family_id, 1, payload_type=FutureTaskDeleted)
    await commit_events(database_url, child.id, child.family_id, 5)
    await recorder.wait_until(lambda events: len(events) == 5)

    deadline = time.monotonic() + 20
    while (await asyncio.to_thread(outbox_statuses, database_url)).get("dead") != 1:
        assert time.monotonic() < deadline, await asyncio.to_thread(outbox_statuses, database_url)
        await asyncio.sleep(0.1)
    [(dead_id, attempts, last_error, history)] = await run_sql(
        database_url,
        "SELECT id, attempts, last_error, jsonb_array_length(errors) FROM outbox_events"
        " WHERE status = 'dead'",
    )
    assert (attempts, history) == (3, 3)
    assert "version 2" in last_error

    # The operator fixes the row (the version is known after all) and replays it.
    await run_sql(database_url, "UPDATE outbox_events SET version = 1 WHERE id = %s", dead_id)
    replayed = await asyncio.to_thread(outbox_cli, database_url, "replay", str(dead_id))
    assert replayed.returncode == 0, replayed.stderr
    await recorder.wait_until(lambda events: len(events) == 6)
    assert recorder.events[-1][1]["id"] == f"evt_{dead_id}"
    assert await asyncio.to_thread(outbox_statuses, database_url) == {"delivered": 6}
    dispatcher.stop()


async def test_metrics_endpoint_reports_the_outbox(
    api: httpx.AsyncClient, web: str, database_url: str, log_dir: Path
) -> None:
    child, recorder = await listening_child(api, web)
    port = free_port()
    dispatcher = await asyncio.to_thread(
        dispatcher_process,
        database_url,
        log_dir,
        DISPATCHER_METRICS_PORT=str(port),
        DISPATCHER_GAUGE_INTERVAL_SECONDS="0.2",
    )
    await commit_events(database_url, child.id, child.family_id, 7)
    await recorder.wait_until(lambda events: len(events) == 7)
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 10
        while True:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            # The backlog gauge is sampled every 0.2 s: it reads 0 a little after the last mark.
            delivered = 'outbox_delivered_total{type="task.deleted"} 7.0' in text
            if delivered and "outbox_backlog 0.0" in text:
                break
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.1)
    # The 7 events, and the member.added that told the parent of the child.
    assert "outbox_commit_to_emit_seconds_count 8.0" in text
    assert "outbox_listener_up 1.0" in text
    dispatcher.stop()
