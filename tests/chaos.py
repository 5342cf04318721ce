"""The chaos lane: 2 web x 2 dispatchers, real clients, one fault at a time, counted per client.

Each scenario offers events continuously to several families (each event to 1-3 of a family's
user streams), injects one kind of fault, lets the system settle, and then checks every client
against what was committed: each event received (after dedupe by id), or the client was told
(a ``sync`` with ``recovered: false`` after which it refetched) and the event is one the outbox
can never send (dead, or deleted by retention) or one the refetch covers (its seq is at most the
position the refetch took) — never a silent hole; nothing received by anyone it was not for.
``tests/test_chaos.py`` runs short versions in CI; run this module for the long ones and the
table in ``docs/reliability.md``::

    .venv/bin/python -m tests.chaos [--write docs/reliability.md] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.db import create_engine, create_sessionmaker
from app.outbox.staging import notify_channel_info, stage
from app.outbox.streams import user_stream
from app.tasks.events import TaskDeleted
from bench.harness import scratch_database
from doubles.socket_clients import StreamFollower
from tests.harness import (
    ManagedProcess,
    Member,
    add_member,
    dispatcher_process,
    outbox_cli,
    run_sql,
    signup,
    stop_while_holding_leases,
    web_process,
)
from tests.throwaway import ThrowawayPostgres, ThrowawayRedis, migrate


class FutureTaskDeleted(TaskDeleted):
    """A version no dispatcher knows yet, as a newer writer might stage in a rolling deploy."""

    event_version = 99


@dataclass
class Committed:
    """One event the writer committed (or may have: the commit's answer was lost)."""

    task_id: str
    streams: tuple[str, ...]
    committed_at: float
    certain: bool = True


@dataclass
class Client:
    member: Member
    follower: StreamFollower
    web_index: int

    @property
    def stream(self) -> str:
        return user_stream(self.member.id)


@dataclass
class Result:
    """What one scenario counted, over all clients."""

    scenario: str
    manager: str
    sent: int = 0  # events committed
    deliveries: int = 0  # (event, recipient) pairs committed
    received: int = 0
    duplicated: int = 0
    missing: int = 0  # never received and never told: silent holes
    told: int = 0  # never received, but the client was told (a refetch covers it)
    misdelivered: int = 0
    late: int = 0  # arrived after a higher seq: a gap filled (catch-up, late delivery)
    resyncs: int = 0
    unsettled: int = 0  # clients whose position did not reach their stream's head
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.misdelivered or self.unsettled)

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def row(self) -> str:
        cells = [
            self.scenario,
            self.manager,
            str(self.sent),
            str(self.deliveries),
            str(self.received),
            str(self.duplicated),
            str(self.missing),
            str(self.told),
            str(self.late),
            str(self.resyncs),
            f"{statistics.median(self.latencies_ms):.0f}" if self.latencies_ms else "-",
            f"{self.percentile(0.99):.0f}",
            f"{max(self.latencies_ms):.0f}" if self.latencies_ms else "-",
            "pass" if self.ok else "FAIL",
        ]
        return "| " + " | ".join(cells) + " |"


TABLE_HEADER = (
    "| scenario | manager | events | deliveries | received | duplicated | silent holes | told"
    " | late (gap filled) | resyncs | p50 ms | p99 ms | max ms | result |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass
class Knobs:
    """How long and how hard a scenario runs (CI runs the short ones)."""

    families: int = 3
    children: int = 2
    rate: float = 60.0  # events committed per second
    run_seconds: float = 12.0
    settle_seconds: float = 45.0
    kills: int = 8
    stop_seconds: float = 15.0
    lease_seconds: float = 10.0


SHORT = Knobs()
LONG = Knobs(
    families=6,
    rate=150.0,
    run_seconds=60.0,
    kills=24,
    stop_seconds=60.0,
    lease_seconds=30.0,
    settle_seconds=90.0,
)


class System:
    """The processes under test, their database, and the clients."""

    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        knobs: Knobs,
        *,
        postgres: ThrowawayPostgres | None,
        redis: ThrowawayRedis | None,
        notes: list[str],
    ) -> None:
        self.database_url = database_url
        self.log_dir = log_dir
        self.knobs = knobs
        self.postgres = postgres
        self.redis = redis
        self.notes = notes
        self.env: dict[str, str] = {
            "DISPATCHER_LEASE_SECONDS": str(knobs.lease_seconds),
            "DISPATCHER_BATCH_SIZE": "50",
            "DISPATCHER_LOG_LEVEL": "INFO",
            "DISPATCHER_MAX_ATTEMPTS": "4",
            "DISPATCHER_STREAM_HOLD_SECONDS": "2",
        }
        if redis is not None:
            self.env["APP_SOCKETIO_REDIS_URL"] = redis.url
        self.webs: list[tuple[ManagedProcess, str]] = []
        self.dispatchers: list[ManagedProcess] = []
        self.clients: list[Client] = []
        self.committed: list[Committed] = []
        self.writing = True

    # -- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(2):
            self.webs.append(web_process(self.database_url, self.log_dir, **self.env))
        for _ in range(2):
            self.dispatchers.append(dispatcher_process(self.database_url, self.log_dir, **self.env))

    def restart_web(self, index: int) -> None:
        self.webs[index] = web_process(self.database_url, self.log_dir, **self.env)

    def replace_dispatcher(self, index: int) -> None:
        self.dispatchers[index] = dispatcher_process(self.database_url, self.log_dir, **self.env)

    def stop(self) -> None:
        for proc in self.dispatchers:
            with contextlib.suppress(Exception):
                proc.stop()
        for proc, _ in self.webs:
            with contextlib.suppress(Exception):
                proc.stop()

    # -- clients -----------------------------------------------------------------------------

    async def populate(self) -> None:
        _, base_url = self.webs[0]
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            for family in range(self.knobs.families):
                parent = await signup(api, f"Parent{family}")
                members = [parent]
                for child in range(self.knobs.children):
                    members.append(await add_member(api, parent, f"Kid{family}x{child}", "child"))
                for member in members:
                    index = len(self.clients) % len(self.webs)
                    client = Client(
                        member, StreamFollower(self.webs[index][1], member.token), index
                    )
                    self.clients.append(client)
        await asyncio.gather(*(c.follower.connect() for c in self.clients))

    async def reconnect(self, client: Client, web_index: int) -> None:
        """Connect ``client`` again, to web process ``web_index``, from its position."""
        client.web_index = web_index
        for attempt in range(100):
            try:
                await client.follower.reconnect(self.webs[web_index][1])
                return
            except Exception:
                if attempt == 99:
                    raise
                await asyncio.sleep(0.2)

    # -- load --------------------------------------------------------------------------------

    async def write(self) -> None:
        """Commit events at the knob's rate until told to stop, surviving database outages."""
        engine = create_engine(self.database_url, pool_size=2)
        sessionmaker = create_sessionmaker(engine, info=notify_channel_info("outbox_events"))
        families: dict[str, list[Client]] = {}
        for client in self.clients:
            families.setdefault(client.member.family_id, []).append(client)
        rng = random.Random(7)
        interval = 1 / self.knobs.rate
        next_at = time.monotonic()
        try:
            while self.writing:
                members = rng.choice(list(families.values()))
                chosen = rng.sample(members, rng.randint(1, min(3, len(members))))
                await self.commit(sessionmaker, chosen)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            await engine.dispose()

    async def commit(
        self,
        sessionmaker: Any,
        chosen: list[Client],
        payload_type: type[TaskDeleted] = TaskDeleted,
    ) -> None:
        task_id = uuid.uuid4()
        streams = tuple(c.stream for c in chosen)
        family = uuid.UUID(chosen[0].member.family_id)
        payload = payload_type(
            task_id=task_id,
            family_id=family,
            affected_users=[uuid.UUID(c.member.id) for c in chosen],
        )
        record = Committed(str(task_id), streams, time.monotonic())
        try:
            async with sessionmaker() as session, session.begin():
                stage(session, payload, streams=streams, family_id=family)
        except Exception:
            record.certain = False  # the commit may or may not have happened
            await asyncio.sleep(0.05)
        self.committed.append(record)

    async def wait_handed_over(self, task_id: str) -> None:
        """Wait until the dispatcher has handed the event of ``task_id`` over (or given up)."""
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            for _ in range(600):
                cur = await conn.execute(
                    "SELECT status FROM outbox_events WHERE payload->>'taskId' = %s", (task_id,)
                )
                row = await cur.fetchone()
                await conn.rollback()
                if row is not None and row[0] != "pending":
                    return
                await asyncio.sleep(0.05)
        raise AssertionError(f"the event of task {task_id} is still pending after 30 s")

    # -- checking ----------------------------------------------------------------------------

    def outbox_state(self) -> tuple[dict[str, str], dict[tuple[str, str], int], dict[str, int]]:
        """Each committed task id's outbox status ('purged' once retention deleted it), its
        seq on each stream (while it is not purged), and every stream's head."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT payload->>'taskId', status FROM outbox_events").fetchall()
            seqs = conn.execute(
                "SELECT e.payload->>'taskId', r.stream, r.seq"
                " FROM outbox_recipients AS r JOIN outbox_events AS e ON e.id = r.event_id"
            ).fetchall()
            heads = dict(conn.execute("SELECT stream, last_seq FROM stream_sequences").fetchall())
        return dict(rows), {(task, stream): seq for task, stream, seq in seqs}, heads

    async def settle(self) -> None:
        """Wait until nothing is pending and every client's position reached its head."""
        deadline = time.monotonic() + self.knobs.settle_seconds
        while time.monotonic() < deadline:
            [(pending,)] = await run_sql(
                self.database_url, "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
            )
            heads = dict(
                await run_sql(self.database_url, "SELECT stream, last_seq FROM stream_sequences")
            )
            behind = [
                c for c in self.clients if (c.follower.position or 0) != heads.get(c.stream, 0)
            ]
            if not pending and not behind:
                return
            await asyncio.sleep(0.25)

    def check(self, result: Result) -> None:
        statuses, seqs, heads = self.outbox_state()
        by_task: dict[str, Committed] = {}
        for record in self.committed:
            if record.certain or record.task_id in statuses:
                by_task[record.task_id] = record
        result.sent = len(by_task)
        for client in self.clients:
            follower = client.follower
            received_tasks = {e["data"]["taskId"]: e for e in follower.envelopes()}
            expected = {t for t, r in by_task.items() if client.stream in r.streams}
            result.deliveries += len(expected)
            result.received += len(expected & received_tasks.keys())
            result.duplicated += follower.duplicates
            result.misdelivered += len(received_tasks.keys() - expected)
            result.late += follower.out_of_order
            result.resyncs += len(follower.resyncs)
            for task_id in expected - received_tasks.keys():
                gone = statuses.get(task_id, "purged") in ("dead", "purged")
                seq = seqs.get((task_id, client.stream))
                refetched = seq is not None and seq <= follower.refetched_through
                if refetched or (gone and follower.refetches > 1):  # beyond the first connect's
                    result.told += 1
                else:
                    result.missing += 1
            if (follower.position or 0) != heads.get(client.stream, 0):
                result.unsettled += 1
            for task_id, envelope in received_tasks.items():
                record = by_task.get(task_id)
                arrived = follower.arrived.get(envelope["id"])
                if record is not None and arrived is not None:
                    result.latencies_ms.append((arrived - record.committed_at) * 1000)


def terminate_backends(database_url: str, *, application_names: tuple[str, ...]) -> int:
    """Kill every backend of the system's processes in this database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND (application_name = ANY(%s) OR application_name LIKE 'listen:%%'"
            "      OR application_name LIKE 'dispatcher%%' OR application_name = '')",
            (list(application_names),),
        ).fetchone()
    return int(row[0]) if row else 0


# -- the faults ------------------------------------------------------------------------------

Fault = Callable[["System", "Scenario"], Awaitable[None]]


@dataclass
class Scenario:
    name: str
    fault: Fault
    manager: str = "postgres"
    throwaway_postgres: bool = False
    # Nothing may end up "told": every event must reach its clients (late ones included).
    all_received: bool = False


async def no_fault(system: System, scenario: Scenario) -> None:
    await asyncio.sleep(system.knobs.run_seconds)


async def dispatcher_kills(system: System, scenario: Scenario) -> None:
    rng = random.Random(11)
    pause = system.knobs.run_seconds / system.knobs.kills
    for _ in range(system.knobs.kills):
        await asyncio.sleep(rng.uniform(0.3, 1.7) * pause)
        index = rng.randrange(len(system.dispatchers))
        victim = system.dispatchers[index]
        # Killed while it holds leased rows, so each kill strands rows to be reclaimed.
        with contextlib.suppress(AssertionError):
            await stop_while_holding_leases(system.database_url, victim)
        victim.kill()
        await asyncio.to_thread(system.replace_dispatcher, index)


async def dispatcher_stall(system: System, scenario: Scenario) -> None:
    await asyncio.sleep(1)
    stalled = system.dispatchers[0]
    assert stalled.process is not None
    # Stopped while it holds leased rows (and perhaps an open transaction): those wait for
    # their lease; every other stream must keep flowing through the other dispatcher.
    held = await stop_while_holding_leases(system.database_url, stalled)
    scenario_note(system, f"stopped a dispatcher holding {held} leased rows")
    try:
        await asyncio.sleep(system.knobs.stop_seconds)
    finally:
        os.kill(stalled.process.pid, signal.SIGCONT)
    await asyncio.sleep(1)


async def connection_kills(system: System, scenario: Scenario) -> None:
    for _ in range(2):
        await asyncio.sleep(system.knobs.run_seconds / 3)
        killed = terminate_backends(
            system.database_url,
            application_names=("socketio-publisher",),
        )
        scenario_note(system, f"terminated {killed} backends")
    await asyncio.sleep(system.knobs.run_seconds / 3)


async def database_restart(system: System, scenario: Scenario) -> None:
    await asyncio.sleep(system.knobs.run_seconds / 2)
    postgres = system.postgres
    assert postgres is not None
    await asyncio.to_thread(postgres.restart, 1.0)
    await asyncio.sleep(system.knobs.run_seconds / 2)


async def web_kill(system: System, scenario: Scenario) -> None:
    await asyncio.sleep(system.knobs.run_seconds / 2)
    system.webs[1][0].kill()
    # Its clients reconnect to the other web process and recover by a catch-up.
    await asyncio.gather(*(system.reconnect(c, 0) for c in system.clients if c.web_index == 1))
    await asyncio.sleep(system.knobs.run_seconds / 2)


async def manager_channel_loss(system: System, scenario: Scenario) -> None:
    for _ in range(2):
        await asyncio.sleep(system.knobs.run_seconds / 3)
        if scenario.manager == "redis":
            redis = system.redis
            assert redis is not None
            await asyncio.to_thread(redis.restart, 2.0)
        else:
            await run_sql(
                system.database_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'listen:socketio'",
            )
    await asyncio.sleep(system.knobs.run_seconds / 3)


async def poison_then_replay(system: System, scenario: Scenario) -> None:
    engine = create_engine(system.database_url, pool_size=1)
    sessionmaker = create_sessionmaker(engine, info=notify_channel_info("outbox_events"))
    try:
        await asyncio.sleep(system.knobs.run_seconds / 4)
        for client in system.clients[::2]:
            await system.commit(sessionmaker, [client], payload_type=FutureTaskDeleted)
        await asyncio.sleep(system.knobs.run_seconds / 2)
    finally:
        await engine.dispose()
    # The operator ships the fix (the version is known after all) and replays the dead rows.
    await run_sql(system.database_url, "UPDATE outbox_events SET version = 1 WHERE version = 99")
    replayed = await asyncio.to_thread(
        cli_output, system.database_url, "replay", "--status", "dead", "--rate", "1000"
    )
    scenario_note(system, f"replay: {replayed.strip().splitlines()[-1] if replayed else ''}")
    await asyncio.sleep(system.knobs.run_seconds / 4)


async def retention_while_offline(system: System, scenario: Scenario) -> None:
    away = system.clients[::3]
    await asyncio.sleep(system.knobs.run_seconds / 3)
    for client in away:
        await client.follower.disconnect()
    await asyncio.sleep(system.knobs.run_seconds / 3)
    # Retention purges everything delivered so far while they are away.
    purged = await asyncio.to_thread(cli_output, system.database_url, "purge", "--older-than", "0s")
    scenario_note(system, purged.strip().splitlines()[-1] if purged.strip() else "purged")
    await asyncio.gather(*(system.reconnect(c, c.web_index) for c in away))
    await asyncio.sleep(system.knobs.run_seconds / 3)


async def position_beyond_head(system: System, scenario: Scenario) -> None:
    await asyncio.sleep(system.knobs.run_seconds / 2)
    # A client that saw more of its stream than the (restored) database still has.
    client = system.clients[0]
    await client.follower.disconnect()
    # Events for it committed while it is away are below the head it resumes from: its
    # refetch covers them (the writer's rate makes this happen only now and then).
    engine = create_engine(system.database_url, pool_size=1)
    try:
        sessionmaker = create_sessionmaker(engine, info=notify_channel_info("outbox_events"))
        await system.commit(sessionmaker, [client])
    finally:
        await engine.dispose()
    await system.wait_handed_over(system.committed[-1].task_id)
    client.follower.position = (client.follower.position or 0) + 1000
    await system.reconnect(client, client.web_index)
    await asyncio.sleep(system.knobs.run_seconds / 2)


def scenario_note(system: System, note: str) -> None:
    system.notes.append(note)


def cli_output(database_url: str, *args: str) -> str:
    """What ``outbox ARGS`` printed, for a scenario's notes."""
    completed = outbox_cli(database_url, *args, timeout=120)
    return completed.stdout + completed.stderr


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("baseline", no_fault),
        Scenario("dispatcher SIGKILL", dispatcher_kills),
        Scenario("dispatcher SIGSTOP", dispatcher_stall),
        Scenario("connection kills", connection_kills),
        Scenario("postgres restart", database_restart, throwaway_postgres=True),
        Scenario("web SIGKILL", web_kill),
        Scenario("manager channel loss", manager_channel_loss),
        Scenario("redis restart", manager_channel_loss, manager="redis"),
        # The Redis manager publishes before the delivery commit: the same faults again.
        Scenario("dispatcher SIGKILL, redis", dispatcher_kills, manager="redis"),
        Scenario("connection kills, redis", connection_kills, manager="redis"),
        Scenario("web SIGKILL, redis", web_kill, manager="redis"),
        Scenario("poison, fixed, replayed", poison_then_replay, all_received=True),
        Scenario("retention while offline", retention_while_offline),
        Scenario("position beyond head", position_beyond_head),
    ]
}


@contextlib.asynccontextmanager
async def database_for(
    scenario: Scenario, server_url: str | None, work_dir: Path
) -> AsyncIterator[tuple[str, ThrowawayPostgres | None]]:
    """A migrated database of the scenario's own (on a throwaway cluster when it needs one)."""
    if scenario.throwaway_postgres or server_url is None:
        with ThrowawayPostgres(work_dir) as postgres:
            postgres.create_database("chaos")
            postgres.migrate("chaos")
            yield postgres.database_url("chaos"), postgres
        return
    with scratch_database(server_url, "chaos") as url:
        migrate(url)
        yield url, None


async def run_scenario(
    scenario: Scenario, knobs: Knobs, *, server_url: str | None, work_dir: Path
) -> Result:
    """Run one scenario end to end and count what every client got."""
    result = Result(scenario.name, scenario.manager)
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        redis = None
        if scenario.manager == "redis":
            redis = stack.enter_context(ThrowawayRedis(work_dir))
        database_url, postgres = await stack.enter_async_context(
            database_for(scenario, server_url, work_dir)
        )
        system = System(
            database_url, work_dir, knobs, postgres=postgres, redis=redis, notes=result.notes
        )
        stack.callback(system.stop)
        system.start()
        await system.populate()
        writer = asyncio.create_task(system.write())
        try:
            await scenario.fault(system, scenario)
        finally:
            system.writing = False
            await writer
        await system.settle()
        system.check(result)
        for client in system.clients:
            with contextlib.suppress(Exception):
                await client.follower.disconnect()
    result.seconds = time.monotonic() - started
    return result


def print_result(result: Result) -> None:
    print(TABLE_HEADER.splitlines()[0])
    print(result.row())
    for note in result.notes:
        print(f"  note: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("--short", action="store_true", help="the CI lengths")
    parser.add_argument("--write", type=Path, help="write the table into this markdown file")
    args = parser.parse_args()
    knobs = SHORT if args.short else LONG
    chosen = [SCENARIOS[name] for name in args.scenarios] or list(SCENARIOS.values())
    server_url = os.environ.get("DATABASE_URL")
    results = []
    for scenario in chosen:
        print(f"--- {scenario.name} ({scenario.manager}) ...", flush=True)
        with tempfile.TemporaryDirectory() as work:
            result = asyncio.run(
                run_scenario(scenario, knobs, server_url=server_url, work_dir=Path(work))
            )
        print_result(result)
        results.append(result)
    if args.write:
        write_table(args.write, results, knobs)
    return 0 if all(r.ok for r in results) else 1


def write_table(path: Path, results: list[Result], knobs: Knobs) -> None:
    table = "\n".join([TABLE_HEADER, *(r.row() for r in results)])
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- chaos:begin -->", "<!-- chaos:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
