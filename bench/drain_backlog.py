"""Draining a 100,000-event outbox backlog, beside its two baselines.

    .venv/bin/python bench/drain_backlog.py [--events 100000] [--streams 1000] [--database-url URL]

Each phase drains an identical fresh backlog: ``--events`` pending ``task.created`` events spread
round-robin over ``--streams`` user streams, written straight into ``outbox_events`` +
``outbox_recipients`` + ``stream_sequences`` as app/outbox/staging.py would have (per-stream
seqs in id order), in a scratch database dropped at the end. One real web process runs
throughout, with one Socket.IO client (bench/peers.py record, another process) on the first
stream, which must receive that stream's events.

- bare:     a bare psycopg loop, one transaction per batch: ``SELECT … FOR UPDATE SKIP LOCKED``
            of the batch (the size of the dispatcher's claims in a backlog: its
            max_batch_size, which its claims grow to) + ``UPDATE status = 'delivered'``, no
            emits. Run with the dispatcher's session settings (synchronous_commit=off; this is
            the baseline of the verdict) and, for reference, with the server default (on).
- system:   the real dispatcher, ``python -m dispatcher`` with default settings; how many
            claims it made and their mean size come from its outbox_batch_size histogram.
- pgqueuer: pgqueuer (``pip install -e '.[bench]'``) draining the same events as jobs, one job per
            (event, stream); the handler builds the same envelope and emits it through a write-only
            app.realtime.pg_manager.PostgresManager (one NOTIFY per emit: a pgqueuer handler sees
            one job, so there is no batch to bundle). pgqueuer's batch size is the dispatcher's
            batch_size (with twice as many jobs in flight, larger batches lose jobs to the 2 s bound
            below), its connection has the dispatcher's synchronous_commit=off, and it runs as ``pgq
            run`` would: asyncpg driver, uvloop (``--pgqueuer-driver psycopg`` for its psycopg
            driver). Its in-flight jobs are capped (``--pgqueuer-max-concurrent``, default twice the
            batch, the least pgqueuer accepts): uncapped, its drain mode starts a task for every job
            it can dequeue, tens of thousands wait on the one publishing connection, and emits that
            wait longer than PostgresManager's 2 s publish bound fail (pgqueuer deletes such a job
            and logs it through a NullHandler, so nothing shows). The phase counts pgqueuer_log's
            statuses and the jobs left: a job that failed or was not run makes the phase incomplete,
            and its budget row fails.

Each rate is events / (runner ready -> last row finished): process start-up is shown apart.
Prints a table, writes bench/results/drain_backlog.json, exits 1 if a budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from family_api import sign_up_family
from harness import (
    RESULTS_DIR,
    BudgetRow,
    Child,
    add_database_url_option,
    budget_rows,
    cpu_percent,
    cpu_snapshot_with_server,
    free_port,
    fresh_log_dir,
    load_average,
    migrated_database,
    results_header,
    run_main,
    start_child,
    system_env,
    uvicorn_argv,
    wait_for_quiet,
    with_other_processes,
    write_results,
)
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from app.outbox.envelope import OutboxEventRow
from app.outbox.streams import user_stream
from app.tasks.events import TaskCreated
from app.tasks.schemas import TaskOut
from dispatcher.settings import DispatcherSettings

ENTRYPOINT = "outbox_event"
DISPATCHER_BATCH = DispatcherSettings.model_fields["batch_size"].default
# In a backlog the dispatcher's claims grow to this: the bare loop claims as many.
DISPATCHER_MAX_BATCH = max(
    DISPATCHER_BATCH, DispatcherSettings.model_fields["max_batch_size"].default
)
PHASES = {
    "bare": "bare loop, synchronous_commit=off (as the dispatcher)",
    "system": "system: python -m dispatcher",
    "pgqueuer": "pgqueuer + PostgresManager emits",
    "bare_sync_on": "bare loop, synchronous_commit=on (server default)",
}
RATIO_VS_BARE = 0.35
RATIO_VS_PGQUEUER = 2.0

# The backlog, as the before_commit hook of app/outbox/staging.py would have written it.
STAGE_EVENTS = """
INSERT INTO outbox_events (type, version, payload, family_id)
SELECT 'task.created', 1,
       jsonb_set(jsonb_set(%(template)s, '{taskId}', to_jsonb(t.task_id)),
                 '{task,id}', to_jsonb(t.task_id)),
       %(family_id)s
FROM (SELECT g, md5('bench-task-' || g)::uuid::text AS task_id
      FROM generate_series(1, %(events)s) AS g) AS t
ORDER BY t.g
"""
STAGE_RECIPIENTS = """
INSERT INTO outbox_recipients (event_id, stream, seq)
SELECT e.id, s.stream, row_number() OVER (PARTITION BY s.k ORDER BY e.id)
FROM outbox_events AS e
JOIN unnest(%(streams)s::text[]) WITH ORDINALITY AS s(stream, k)
  ON s.k = (e.id - 1) %% cardinality(%(streams)s::text[]) + 1
"""
STAGE_SEQUENCES = """
INSERT INTO stream_sequences (stream, last_seq)
SELECT stream, max(seq) FROM outbox_recipients GROUP BY stream
"""
# What a pgqueuer job carries: the event row and the one stream it goes to.
JOB_ROWS = """
SELECT e.id, e.type, e.version, e.payload::text, e.family_id, e.created_at, r.stream, r.seq
FROM outbox_events AS e JOIN outbox_recipients AS r ON r.event_id = e.id
ORDER BY e.id
"""

# Baseline (a): claim a batch with SKIP LOCKED and mark it delivered, one transaction per batch.
# The payload comes as text, as the dispatcher's claim takes it (no jsonb decoding).
BARE_CLAIM = """
SELECT id, type, version, payload::text, family_id, created_at FROM outbox_events
WHERE status = 'pending' ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
BARE_MARK = """
UPDATE outbox_events SET status = 'delivered', delivered_at = clock_timestamp()
WHERE id = ANY(%(ids)s)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="backlog size")
    parser.add_argument("--streams", type=int, default=1000, help="user streams it spreads over")
    add_database_url_option(parser)
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run, in order (default: {','.join(PHASES)})",
    )
    parser.add_argument(
        "--pgqueuer-max-concurrent",
        type=int,
        default=2 * DISPATCHER_BATCH,
        help="pgqueuer's max_concurrent_tasks (0: unlimited, its default; at least twice the"
        " batch otherwise)",
    )
    parser.add_argument(
        "--pgqueuer-driver",
        choices=["asyncpg", "psycopg"],
        default="asyncpg",
        help="pgqueuer's database driver (asyncpg: what `pgq run` picks when installed)",
    )
    return parser.parse_args()


# --- the backlog ------------------------------------------------------------------------------


def payload_template(family_id: str, child_id: str) -> dict[str, Any]:
    """A task.created payload as app/tasks/events.py builds it (taskId is set per row)."""
    task_id = uuid.uuid4()
    task = TaskOut(
        id=task_id,
        family_id=uuid.UUID(family_id),
        title="Empty the dishwasher",
        description="Before dinner, please: plates in the left cupboard.",
        karma_reward=5,
        due_at=None,
        created_by=uuid.uuid4(),
        assigned_to=[uuid.UUID(child_id)],
        completed_by=None,
        completed_at=None,
        created_at=datetime.now(UTC),
    )
    payload = TaskCreated(
        task_id=task_id, family_id=task.family_id, assigned_to=task.assigned_to, task=task
    )
    return payload.model_dump(mode="json", by_alias=True)


OUTBOX_TABLES = ["outbox_events", "outbox_recipients", "stream_sequences"]
PGQUEUER_TABLES = ["pgqueuer", "pgqueuer_log", "pgqueuer_statistics"]


def truncate(conn: psycopg.Connection[Any], tables: list[str]) -> None:
    conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def stage_outbox(
    conn: psycopg.Connection[Any],
    *,
    events: int,
    streams: list[str],
    template: dict[str, Any],
    tables: list[str],
) -> None:
    """A fresh backlog of ``events`` pending events in the outbox (``tables`` emptied first)."""
    family_id = template["familyId"]
    with conn.transaction():
        truncate(conn, tables)
        conn.execute(
            STAGE_EVENTS, {"template": Jsonb(template), "family_id": family_id, "events": events}
        )
        conn.execute(STAGE_RECIPIENTS, {"streams": streams})
        conn.execute(STAGE_SEQUENCES)


def settle(conn: psycopg.Connection[Any], tables: list[str]) -> None:
    """Same starting state for every phase: fresh statistics, no dead tuples, no dirty pages."""
    for table in tables:
        conn.execute(f"VACUUM (ANALYZE) {table}")
    conn.execute("CHECKPOINT")


async def install_pgqueuer(database_url: str) -> None:
    from pgqueuer import Queries

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await Queries.from_psycopg_connection(conn).install()


async def stage_pgqueuer(database_url: str, batch: int = 10_000) -> int:
    """The outbox backlog as pgqueuer jobs (same events, one job per recipient stream); the
    outbox is emptied."""
    from pgqueuer import Queries

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(JOB_ROWS)
        rows = await cur.fetchall()
        queries = Queries.from_psycopg_connection(conn)
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            payloads: list[bytes | None] = [job_payload(row) for row in chunk]
            await queries.enqueue([ENTRYPOINT] * len(chunk), payloads, [0] * len(chunk))
        await conn.execute(f"TRUNCATE {', '.join(OUTBOX_TABLES)} RESTART IDENTITY CASCADE")
    return len(rows)


def job_payload(row: tuple[Any, ...]) -> bytes:
    event_id, type_, version, payload, family_id, created_at, stream, seq = row
    job = {
        "id": event_id,
        "type": type_,
        "version": version,
        "payload": payload,
        "family_id": str(family_id) if family_id else None,
        "created_at": created_at.isoformat(),
        "stream": stream,
        "seq": seq,
    }
    return json.dumps(job, separators=(",", ":")).encode()


# --- the runners (child processes: ``drain_backlog.py --runner KIND URL BATCH``) --------------


def run_bare(database_url: str, batch: int, synchronous_commit: str) -> None:
    options = f"-c synchronous_commit={synchronous_commit}"
    with psycopg.connect(database_url, options=options) as conn:
        print(f"ready {time.time()}", flush=True)
        ready, drained, batches = time.time(), 0, 0
        while True:
            with conn.transaction():
                rows = conn.execute(BARE_CLAIM, {"limit": batch}).fetchall()
                if rows:
                    conn.execute(BARE_MARK, {"ids": [row[0] for row in rows]})
            if not rows:
                break
            drained += len(rows)
            batches += 1
        finished = time.time()
        print(json.dumps({"ready": ready, "finished": finished, "drained": drained}), flush=True)
        sys.stdin.readline()  # keep the backend alive until the parent has read its CPU time


async def run_pgqueuer(
    database_url: str, batch: int, channel: str, max_concurrent: int | None, driver: str
) -> None:
    from pgqueuer import Job, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    from app.realtime.pg_manager import PostgresManager

    manager = PostgresManager(database_url, channel=channel, write_only=True)
    # pgqueuer's own connection gets the dispatcher's durability setting.
    close: Any
    if driver == "asyncpg":
        import asyncpg

        params = conninfo_to_dict(database_url)
        aconn = await asyncpg.connect(
            host=params.get("host"),
            port=int(params.get("port") or 5432),
            user=params.get("user"),
            password=params.get("password"),
            database=params.get("dbname"),
            server_settings={"synchronous_commit": "off"},
        )
        queries, close = Queries.from_asyncpg_connection(aconn), aconn.close
    else:
        pconn = await psycopg.AsyncConnection.connect(
            database_url, autocommit=True, options="-c synchronous_commit=off"
        )
        queries, close = Queries.from_psycopg_connection(pconn), pconn.close
    qm = QueueManager(queries)
    emitted = 0

    @qm.entrypoint(ENTRYPOINT)
    async def deliver(job: Job) -> None:
        nonlocal emitted
        assert job.payload is not None
        event = json.loads(job.payload)
        row = OutboxEventRow(
            id=event["id"],
            type=event["type"],
            version=event["version"],
            payload_text=event["payload"],
            family_id=uuid.UUID(event["family_id"]) if event["family_id"] else None,
            created_at=datetime.fromisoformat(event["created_at"]),
            attempts=job.attempts,
            recipients=[(event["stream"], event["seq"])],
        )
        envelope = row.envelope(event["stream"], event["seq"])
        await manager.emit(row.type, envelope, room=event["stream"])
        emitted += 1

    print(f"ready {time.time()}", flush=True)
    ready = time.time()
    await qm.run(
        batch_size=batch, mode=QueueExecutionMode.drain, max_concurrent_tasks=max_concurrent
    )
    finished = time.time()
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        left = await (await conn.execute("SELECT count(*) FROM pgqueuer")).fetchone()
        # How each job ended (its handler's exceptions are logged to a NullHandler only).
        cur = await conn.execute("SELECT status::text, count(*) FROM pgqueuer_log GROUP BY 1")
        statuses = dict(await cur.fetchall())
    result = {"ready": ready, "finished": finished, "drained": emitted}
    result |= {"jobs_left": left[0] if left else None, "job_statuses": statuses}
    print(json.dumps(result), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await manager.aclose()
    await close()


def runner_main(kind: str, database_url: str, batch: int, extra: list[str]) -> None:
    if kind == "bare":
        run_bare(database_url, batch, extra[0])
        return
    from app.settings import Settings

    # Only the channel's name is read: the development defaults do.
    channel = Settings(environment="development").socketio_channel
    drain = run_pgqueuer(database_url, batch, channel, int(extra[0]) or None, extra[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(drain)
    else:
        uvloop.run(drain)  # as `pgq run` does


# --- the phases --------------------------------------------------------------------------------


class Phase:
    """What every phase shares: the database, the web process and the recorder."""

    def __init__(self, database_url: str, children: dict[str, Child], log_dir: Path) -> None:
        self.database_url = database_url
        self.children = children
        self.log_dir = log_dir
        self.dbname = str(conninfo_to_dict(database_url)["dbname"])


def run_baseline_child(phase: Phase, name: str, argv: list[str]) -> dict[str, Any]:
    """Start a runner, time it from its 'ready' to its own finish, with CPU use meanwhile."""
    spawned = time.time()
    child = start_child(name, argv, system_env(phase.database_url), phase.log_dir, pipes=True)
    try:
        assert child.process.stdout is not None
        assert child.process.stdin is not None
        line = child.process.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"{name} did not start:\n{child.log_tail()}")
        before = cpu_snapshot_with_server(phase.children | {name: child}, phase.dbname)
        line = child.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{name} failed:\n{child.log_tail()}")
        after = cpu_snapshot_with_server(phase.children | {name: child}, phase.dbname)
        result: dict[str, Any] = json.loads(line)
        child.process.stdin.write("done\n")
        child.process.stdin.flush()
    finally:
        child.stop()
    return {
        "drained": result["drained"],
        "seconds": result["finished"] - result["ready"],
        "startup_seconds": result["ready"] - spawned,
        "cpu_percent_of_one_core": with_other_processes(cpu_percent(before, after)),
    } | {k: v for k, v in result.items() if k not in {"ready", "finished", "drained"}}


def logged_at(log_path: Path, message: str) -> float:
    """Unix time of the dispatcher's JSON log record ``message`` (asctime, ms precision)."""
    for line in log_path.read_text(errors="replace").splitlines():
        if message in line:
            asctime = json.loads(line)["asctime"]
            return datetime.strptime(asctime, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError(f"{message!r} not logged")


def run_system(phase: Phase, events: int) -> dict[str, Any]:
    """The real dispatcher, from its worker starting until no outbox row is pending."""
    (phase.log_dir / "dispatcher.log").unlink(missing_ok=True)
    spawned = time.time()
    argv = [sys.executable, "-m", "dispatcher"]
    metrics_port = free_port()
    env = system_env(phase.database_url, DISPATCHER_METRICS_PORT=str(metrics_port))
    dispatcher = start_child("dispatcher", argv, env, phase.log_dir)
    try:
        dispatcher.wait_for_log("dispatcher worker started", timeout=60)
        watched = phase.children | {"dispatcher": dispatcher}
        before = cpu_snapshot_with_server(watched, phase.dbname)
        with psycopg.connect(phase.database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 1800
            while conn.execute(
                "SELECT EXISTS (SELECT 1 FROM outbox_events WHERE status = 'pending')"
            ).fetchone() != (False,):
                dispatcher.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError("the backlog did not drain in 30 minutes")
                time.sleep(0.1)
            after = cpu_snapshot_with_server(watched, phase.dbname)
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'delivered'),"
                " count(*) FILTER (WHERE status = 'dead'), sum(attempts),"
                " extract(epoch FROM max(delivered_at))::float8 FROM outbox_events"
            ).fetchone()
        batches = claimed_batches(f"http://127.0.0.1:{metrics_port}/metrics")
    finally:
        dispatcher.stop()
    assert row is not None
    delivered, dead, attempts, last_delivered = row
    ready = logged_at(dispatcher.log_path, "dispatcher worker started")
    return {
        "drained": delivered,
        "dead": dead,
        "claims_over_events": round(int(attempts) / events, 3),
        "batches": batches,
        "seconds": last_delivered - ready,
        "startup_seconds": ready - spawned,
        "cpu_percent_of_one_core": with_other_processes(cpu_percent(before, after)),
    }


def claimed_batches(metrics_url: str) -> dict[str, Any]:
    """The dispatcher's claims, from its outbox_batch_size histogram: how many, their mean
    size, and how many took at most each bucket's rows."""
    text = httpx.get(metrics_url, timeout=10).text
    count = total = 0.0
    buckets: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == "outbox_batch_size_count":
            count = float(value)
        elif name == "outbox_batch_size_sum":
            total = float(value)
        elif name.startswith('outbox_batch_size_bucket{le="'):
            buckets[name.split('"')[1]] = int(float(value))
    mean = round(total / count, 1) if count else None
    return {"claims": int(count), "mean_rows": mean, "at_most": buckets}


def check_receipts(recorder: Child, stream_events: list[int], timeout: float) -> dict[str, Any]:
    """Ask the recorder for the first stream's events; count them, and their order by seq."""
    assert recorder.process.stdin is not None
    assert recorder.process.stdout is not None
    recorder.process.stdin.write(f"{len(stream_events)} {timeout}\n")
    recorder.process.stdin.flush()
    receipts = json.loads(recorder.process.stdout.readline())
    envelopes = [e for _, _, e in receipts if isinstance(e, dict) and e.get("type")]
    ids = {int(e["id"].removeprefix("evt_")) for e in envelopes}
    seqs = [e["seq"] for e in envelopes]
    return {
        "expected": len(stream_events),
        "received": len(envelopes),
        "missing": len(set(stream_events) - ids),
        "out_of_order": sum(b <= a for a, b in itertools.pairwise(seqs)),
    }


def flush_recorder(recorder: Child) -> None:
    assert recorder.process.stdin is not None
    assert recorder.process.stdout is not None
    recorder.process.stdin.write("0 0\n")
    recorder.process.stdin.flush()
    recorder.process.stdout.readline()


def measure(database_url: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    env = system_env(database_url)
    port = free_port()
    web_url = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        web = start_child(
            "web", uvicorn_argv("app.main:create_app", port, "--factory"), env, log_dir
        )
        stack.callback(web.stop)
        web.wait_for_http(f"{web_url}/healthz")

        async def sign_up() -> tuple[str, str, str]:
            async with httpx.AsyncClient(base_url=web_url, timeout=60) as api:
                parent, kids = await sign_up_family(api, 1)
            return parent.family_id, kids[0].id, kids[0].token

        family_id, child_id, token = asyncio.run(sign_up())
        recorder_argv = [sys.executable, "bench/peers.py", "record", web_url, token]
        recorder = start_child("recorder", recorder_argv, env, log_dir, pipes=True)
        stack.callback(recorder.stop)
        assert recorder.process.stdout is not None
        if recorder.process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"recorder did not connect:\n{recorder.log_tail()}")
        # The first stream is the recorder's; the others belong to nobody connected.
        streams = [user_stream(child_id)] + [
            user_stream(uuid.uuid4()) for _ in range(args.streams - 1)
        ]
        stream_events = list(range(1, args.events + 1, args.streams))
        template = payload_template(family_id, child_id)
        phase = Phase(database_url, {"web": web, "recorder": recorder}, log_dir)

        plan = [(key, PHASES[key]) for key in args.phases.split(",")]
        with_pgqueuer = "pgqueuer" in args.phases.split(",")
        tables = OUTBOX_TABLES + PGQUEUER_TABLES if with_pgqueuer else OUTBOX_TABLES
        if with_pgqueuer:
            asyncio.run(install_pgqueuer(database_url))
        with psycopg.connect(database_url, autocommit=True) as conn:

            def fresh_outbox() -> None:
                started = time.perf_counter()
                stage_outbox(
                    conn, events=args.events, streams=streams, template=template, tables=tables
                )
                settle(conn, tables)
                print(f"  staged {args.events} events in {time.perf_counter() - started:.1f} s")

            for key, title in plan:
                print(f"{title} ...", flush=True)
                fresh_outbox()
                if key == "pgqueuer":
                    started = time.perf_counter()
                    jobs = asyncio.run(stage_pgqueuer(database_url))
                    settle(conn, tables)
                    print(f"  enqueued {jobs} jobs in {time.perf_counter() - started:.1f} s")
                flush_recorder(recorder)
                quiet = wait_for_quiet(label=title)
                load_before = load_average()
                if key == "system":
                    result = run_system(phase, args.events)
                elif key == "pgqueuer":
                    argv = [sys.executable, __file__, "--runner", "pgqueuer"]
                    argv += [str(DISPATCHER_BATCH), str(args.pgqueuer_max_concurrent)]
                    argv += [args.pgqueuer_driver]
                    result = run_baseline_child(phase, "pgqueuer", argv)
                else:
                    sync = "on" if key == "bare_sync_on" else "off"
                    argv = [sys.executable, __file__, "--runner", "bare"]
                    argv += [str(DISPATCHER_MAX_BATCH), sync]
                    result = run_baseline_child(phase, key, argv)
                result["events_per_s"] = round(result["drained"] / result["seconds"], 1)
                result["seconds"] = round(result["seconds"], 3)
                result["startup_seconds"] = round(result["startup_seconds"], 3)
                if key in {"system", "pgqueuer"}:
                    result["first_stream_receipts"] = check_receipts(recorder, stream_events, 30)
                result["incomplete"] = incomplete(result, args.events)
                result |= {
                    "title": title,
                    "quiet": quiet,
                    "load_before": load_before,
                    "load_after": load_average(),
                }
                results[key] = result
                print(
                    f"  {result['events_per_s']:>10,.0f} events/s  ({result['drained']} in"
                    f" {result['seconds']:.2f} s; load {load_before} -> {result['load_after']})",
                    flush=True,
                )
                if result["incomplete"]:
                    print(f"  INCOMPLETE: {'; '.join(result['incomplete'])}", flush=True)
    return results


def incomplete(result: dict[str, Any], events: int) -> list[str]:
    """What a phase left undone: every event delivered once, none dead, failed or left."""
    problems = []
    if result["drained"] != events:
        problems.append(f"{result['drained']} of {events} events delivered")
    if result.get("dead"):
        problems.append(f"{result['dead']} events dead")
    if result.get("jobs_left"):
        problems.append(f"{result['jobs_left']} jobs left in the queue")
    # pgqueuer_log has a row per status change: queued, picked, then how the job ended.
    ended = {
        k: v for k, v in result.get("job_statuses", {}).items() if k not in {"queued", "picked"}
    }
    if ended and ended != {"successful": events}:
        problems.append(f"how the jobs ended: {ended}")
    receipts = result.get("first_stream_receipts")
    if receipts and receipts["missing"]:
        problems.append(f"the first stream's socket missed {receipts['missing']} events")
    return problems


# --- the report --------------------------------------------------------------------------------


def report(results: dict[str, Any], events: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    print(f"\nDraining a {events:,}-event backlog, {cores} cores")
    print(
        f"  code under test: {results['source']}; batches: the dispatcher's claims"
        f" {DISPATCHER_BATCH} growing to {DISPATCHER_MAX_BATCH}, the bare loop's"
        f" {DISPATCHER_MAX_BATCH}, pgqueuer's {DISPATCHER_BATCH}"
    )
    header = f"  {'runner':<52}{'events/s':>10}{'seconds':>9}{'start-up':>9}"
    print(header + "  1-min load before/after, others' CPU meanwhile")
    order = [k for k in ("bare", "bare_sync_on", "pgqueuer", "system") if k in results["phases"]]
    for key in order:
        r = results["phases"][key]
        loads = f"{r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}"
        others = f"{r['cpu_percent_of_one_core']['others']:.0f}% of a core"
        flag = "" if r["quiet"]["quiet"] else "  (machine not quiet at start)"
        print(
            f"  {r['title']:<52}{r['events_per_s']:>10,.0f}{r['seconds']:>9.2f}"
            f"{r['startup_seconds']:>9.2f}  {loads}, {others}{flag}"
        )
    for key in order:
        r = results["phases"][key]
        if "batches" in r:
            batches = r["batches"]
            print(
                f"    {key}: {batches['claims']:,} claims of {batches['mean_rows']} rows on"
                f" average; each event claimed {r['claims_over_events']} times"
            )
        if "first_stream_receipts" in r:
            receipts = r["first_stream_receipts"]
            print(
                f"    {key}: the socket on the first stream got {receipts['received']}/"
                f"{receipts['expected']} events, {receipts['missing']} missing,"
                f" {receipts['out_of_order']} out of seq order"
            )
        cpu = ", ".join(f"{k} {v:g}" for k, v in r["cpu_percent_of_one_core"].items())
        print(f"    {key} CPU, % of one core: {cpu} (machine: of {100 * cores})")
    phases = results["phases"]
    verdicts: dict[str, Any] = {}
    if "system" not in phases:
        print("Budget: not judged (the system phase was not run)")
        return verdicts
    system = phases["system"]
    complete = not system["incomplete"]
    verdicts["system_delivered_everything"] = complete
    print("Budget:")
    rows = []
    for key, name, budget in (
        ("bare", "bare loop", RATIO_VS_BARE),
        ("pgqueuer", "pgqueuer ", RATIO_VS_PGQUEUER),
    ):
        if key not in phases:
            print(f"  system / {name}: not judged (the {key} phase was not run)")
            continue
        ratio = system["events_per_s"] / phases[key]["events_per_s"]
        verdicts[f"ratio_vs_{key}"] = round(ratio, 3)
        # A baseline that did not drain everything measured something else: no verdict passes.
        baseline_complete = not phases[key]["incomplete"]
        verdicts[f"{key}_drained_everything"] = baseline_complete
        verdicts[f"vs_{key}_ok"] = ok = ratio >= budget and complete and baseline_complete
        rows.append(
            BudgetRow(
                what=f"drain of a {events:,}-event backlog, vs {name.strip()}",
                measured=f"{system['events_per_s']:,.0f} events/s",
                baseline=f"{phases[key]['title']}: {phases[key]['events_per_s']:,.0f} events/s"
                + ("" if baseline_complete else f" (INCOMPLETE: {phases[key]['drained']:,})"),
                ratio=round(ratio, 3),
                budget=f">= {budget} x, nothing lost",
                passed=ok,
            )
        )
        print(
            f"  system / {name} = {system['events_per_s']:,.0f} / "
            f"{phases[key]['events_per_s']:,.0f} = {ratio:.3f} (budget >= {budget})"
            f"  {'PASS' if ok else 'FAIL'}"
        )
        if not baseline_complete:
            print(f"  the {key} baseline did not drain everything (see the JSON): FAIL")
    if not complete:
        print("  the system did not deliver every event (see the JSON): FAIL")
    results["rows"] = budget_rows(*rows)
    return verdicts


def main() -> int:
    args = parse_args()
    log_dir = fresh_log_dir(RESULTS_DIR / "drain_backlog-logs")
    results = results_header(args) | {"load_average_start": load_average()}
    with migrated_database(args.database_url, "bench_drain") as database_url:
        results["phases"] = measure(database_url, args, log_dir)
    results["load_average_end"] = load_average()
    results["budget"] = report(results, args.events)
    write_results(results, RESULTS_DIR / "drain_backlog.json", log_dir)
    budget = results["budget"]
    judged = [v for k, v in budget.items() if k.endswith("_ok")]
    drained = all(not phase["incomplete"] for phase in results["phases"].values())
    return 0 if all(judged) and drained else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--runner":
        # The database URL comes in the environment: it may hold a password.
        runner_main(sys.argv[2], os.environ["DATABASE_URL"], int(sys.argv[3]), sys.argv[4:])
        sys.exit(0)
    run_main(main)
