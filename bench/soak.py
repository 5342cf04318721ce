"""Soak: 1 web + 1 dispatcher under a steady event load for minutes, with retention purging.

    .venv/bin/python bench/soak.py [--seconds 600] [--clients 500] [--rate 200] [--json PATH]

The real ``web`` and ``dispatcher`` processes on a scratch database, the dispatcher with a
retention window of ``--retention-seconds`` (given to it in days) purged every
``--purge-interval`` s, so retention deletes rows while the load runs. ``--clients`` members
(families of ``--family-size``, made through the app's services) each hold one Socket.IO client
in this process that keeps the client side of docs/delivery.md: it drops envelope ids it has,
tracks its position (the highest seq up to which it has everything), answers ``resync`` and a
gap left open for 0.5 s with ``sync.request``, and reconnects with ``lastSeq``. Writers commit
task.deleted events through the staging API at ``--rate`` events/s, each for 1-3 members of
one family. Every ``--sample-interval`` s: RSS of both processes, the outbox backlog (pending)
and its row count. After the load: waits (up to ``--settle`` s) for the backlog to drain and
the clients to catch up, prints the numbers, writes them as JSON, and exits 1 when a check
fails: missing deliveries, RSS growth after warm-up, an unbounded backlog, no retention purge,
and, with ``--p99-budget-ms``, less than 95% of the offered rate committed or a commit -> client
p99 over the budget (``python3 dev.py bench`` holds it to docs/design.md's 20 ms at 1,000
events/s with 1,000 clients, and writes the budget row).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import socketio
from family_api import Member, create_families, task_of
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
    migrate,
    raise_fd_limit,
    results_header,
    rss_kib,
    run_main,
    scratch_database,
    start_child,
    summarize_ms,
    system_env,
    uvicorn_argv,
    with_other_processes,
    write_results,
)
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import create_engine, create_sessionmaker
from app.outbox.staging import notify_channel_info, stage
from app.outbox.streams import user_stream
from app.tasks.events import TaskDeleted
from doubles.socket_clients import StreamFollower

LOG_DIR = RESULTS_DIR / "soak-logs"
OUTBOX_CHANNEL = "outbox_events"  # APP_OUTBOX_CHANNEL's default: what the dispatcher LISTENs to
SECONDS_PER_DAY = 86400
CONNECT_CONCURRENCY = 25
OTHERS_CPU_LIMIT = 30  # % of one core used by processes not ours before we call the run noisy
DRIVER_CPU_LIMIT = 80  # % of one core: above it this process, not the system, may set latency
PURGE_LOG_MESSAGE = "purged delivered outbox rows"
RATE_REACHED = 0.95  # of --rate: below it the latency was not measured at the rate offered
Sessions = async_sessionmaker[AsyncSession]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_database_url_option(parser)
    parser.add_argument("--seconds", type=float, default=600, help="how long events are offered")
    parser.add_argument("--clients", type=int, default=500, help="members, one socket each")
    parser.add_argument("--family-size", type=int, default=5, help="members per family")
    parser.add_argument("--rate", type=float, default=200, help="events/s offered")
    parser.add_argument("--writers", type=int, default=4, help="concurrent committing writers")
    parser.add_argument(
        "--retention-seconds", type=float, default=30, help="dispatcher's retention window"
    )
    parser.add_argument("--purge-interval", type=float, default=10, help="s between purges")
    parser.add_argument("--sample-interval", type=float, default=2, help="s between samples")
    parser.add_argument(
        "--warmup", type=float, default=None, help="s of load before the RSS baseline"
    )
    parser.add_argument("--rss-growth-limit", type=float, default=10, help="%% after warm-up")
    parser.add_argument(
        "--backlog-limit-seconds", type=float, default=5, help="max backlog, in s of events"
    )
    parser.add_argument("--settle", type=float, default=60, help="s to wait for the drain")
    parser.add_argument(
        "--p99-budget-ms",
        type=float,
        default=None,
        help="also check commit -> client p99 and the rate reached, and write a budget row",
    )
    parser.add_argument("--seed", type=int, default=1, help="of the recipients' choice")
    parser.add_argument(
        "--log-dir", type=Path, default=LOG_DIR, help="the processes' logs (emptied first)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / "soak.json",
        help="where to write the numbers (default bench/results/soak.json)",
    )
    args = parser.parse_args()
    if args.family_size < 1 or args.clients < args.family_size:
        parser.error("--clients must be at least --family-size (>= 1)")
    if args.clients % args.family_size:
        parser.error("--clients must be a multiple of --family-size")
    if args.warmup is None:
        # The first 20 % (at least 10 s) settle allocators, pools and caches.
        args.warmup = max(10.0, 0.2 * args.seconds)
    if args.warmup >= args.seconds:
        parser.error(f"--seconds must exceed the warm-up ({args.warmup:g} s)")
    return args


def token_ttl(args: argparse.Namespace) -> int:
    """Tokens outlive the run: an expiring one would disconnect its socket mid-soak."""
    return int(args.seconds + args.settle) + 3600


# -- the clients -----------------------------------------------------------------------------


class Follower(StreamFollower):
    """One member's socket in the soak: the client side of the gap contract (StreamFollower),
    reconnecting by itself from its position as a browser would, counting its connects and drops,
    and noting when each task's event first arrived."""

    def __init__(self, member: Member, url: str) -> None:
        super().__init__(url, member.token)
        self.member = member
        self.client = socketio.AsyncClient(handle_sigint=False)  # Ctrl-C is run_main's
        self.client.on("*", self._record)
        self.client.on("connect", self._on_connect)
        self.client.on("disconnect", self._on_disconnect)
        self.task_arrived: dict[str, float] = {}  # task id -> time.monotonic() at first arrival
        self.connects = self.disconnects = 0
        self.closing = False  # our own disconnect at the end is not counted as a drop

    def _auth(self) -> dict[str, Any]:
        # Read on every (re)connect, so a reconnect replays what was missed since the position.
        auth: dict[str, Any] = {"token": self.token}
        if self.position is not None:
            auth["lastSeq"] = self.position
        return auth

    async def connect(self, last_seq: int | None = None) -> None:
        """Connect and wait for the first ``sync`` (the stream's head: the start position)."""
        await self.client.connect(
            self.base_url, auth=self._auth, transports=["websocket"], wait_timeout=10
        )
        await self.wait_until(lambda _: bool(self.syncs), within=30)

    async def disconnect(self) -> None:
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await self.client.disconnect()

    async def _on_connect(self) -> None:
        self.connects += 1

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnects += not self.closing

    async def _record(self, event: str, data: Any) -> None:
        if (task_id := task_of(data)) is not None:
            self.task_arrived.setdefault(task_id, time.monotonic())
        await super()._record(event, data)


async def connect_all(followers: list[Follower]) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(follower: Follower) -> None:
        async with gate:
            await follower.connect()

    await asyncio.gather(*(one(f) for f in followers))


# -- the load, the samples, the drain --------------------------------------------------------


@dataclass
class Offer:
    task_id: str
    recipients: tuple[int, ...]  # indexes into the followers
    committed: float  # time.monotonic() once the commit returned


@dataclass
class Sample:
    t: float  # s since the load started
    phase: str  # "load", "stop" (as the load stopped), "drain" or "end"
    web_rss_kib: int
    dispatcher_rss_kib: int
    pending: int
    dead: int
    rows: int  # outbox_events rows of any status
    outbox_kib: int  # outbox_events + outbox_recipients, indexes and TOAST included
    committed: int
    connected: int
    load1: float


OUTBOX_NUMBERS = """
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'dead'),
       count(*),
       (pg_total_relation_size('outbox_events') + pg_total_relation_size('outbox_recipients'))
           / 1024
FROM outbox_events
"""


@dataclass
class Soak:
    """One run's state: the clients, what was committed for whom, and the samples."""

    args: argparse.Namespace
    database_url: str
    children: dict[str, Child]
    families: list[list[Member]]
    followers: list[Follower]
    conn: psycopg.AsyncConnection[Any]
    offers: list[Offer] = field(default_factory=list)
    expected: list[set[str]] = field(default_factory=list)  # task ids, per follower
    samples: list[Sample] = field(default_factory=list)
    commit_errors: list[str] = field(default_factory=list)
    late_commits: int = 0  # committed more than a second behind the schedule
    phase: str = "load"
    load_started: float = 0.0

    async def outbox_numbers(self) -> tuple[int, int, int, int]:
        cur = await self.conn.execute(OUTBOX_NUMBERS)
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    async def sample(self) -> Sample:
        for child in self.children.values():
            child.check_alive()
        pending, dead, rows, outbox_kib = await self.outbox_numbers()
        taken = Sample(
            t=round(time.monotonic() - self.load_started, 2),
            phase=self.phase,
            web_rss_kib=rss_kib(self.children["web"].process.pid),
            dispatcher_rss_kib=rss_kib(self.children["dispatcher"].process.pid),
            pending=pending,
            dead=dead,
            rows=rows,
            outbox_kib=outbox_kib,
            committed=len(self.offers),
            connected=sum(f.client.connected for f in self.followers),
            load1=round(os.getloadavg()[0], 2),
        )
        self.samples.append(taken)
        return taken

    async def sample_forever(self) -> None:
        started, interval = time.monotonic(), self.args.sample_interval
        for tick in itertools.count(1):
            await self.sample()
            await asyncio.sleep(max(0.0, started + tick * interval - time.monotonic()))

    @contextlib.asynccontextmanager
    async def sampling(self, phase: str) -> AsyncIterator[None]:
        """Samples every interval while the block runs, labelled ``phase``."""
        self.phase = phase
        sampler = asyncio.create_task(self.sample_forever())
        block = asyncio.current_task()
        assert block is not None

        def stop_block(task: asyncio.Task[None]) -> None:
            # A failed sample (a process died) ends the run now, not after the whole load;
            # awaiting the sampler below then raises its error.
            if not task.cancelled() and task.exception() is not None:
                block.cancel()

        sampler.add_done_callback(stop_block)
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    async def offer(self, sessionmaker: Sessions, stop_at: float) -> None:
        """Commit events at the offered rate, the i-th due i/rate s after the start, from
        concurrent writers (one event per transaction, like one REST request)."""
        indexes = itertools.count()
        rng = random.Random(self.args.seed)
        size = self.args.family_size

        async def writer() -> None:
            while (due := self.load_started + next(indexes) / self.args.rate) < stop_at:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if time.monotonic() >= stop_at:
                    return  # fell behind: the shortfall shows in the achieved rate
                family = rng.randrange(len(self.families))
                chosen = rng.sample(range(size), rng.randint(1, min(3, size)))
                members = [self.families[family][m] for m in chosen]
                task_id = uuid.uuid4()
                payload = TaskDeleted(
                    task_id=task_id,
                    family_id=uuid.UUID(members[0].family_id),
                    affected_users=[uuid.UUID(m.id) for m in members],
                )
                try:
                    async with sessionmaker() as session, session.begin():
                        stage(
                            session,
                            payload,
                            streams=[user_stream(m.id) for m in members],
                            family_id=uuid.UUID(members[0].family_id),
                        )
                except (SQLAlchemyError, OSError) as exc:
                    self.commit_errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                committed = time.monotonic()
                self.late_commits += committed - due > 1
                recipients = tuple(family * size + m for m in chosen)
                self.offers.append(Offer(str(task_id), recipients, committed))
                for index in recipients:
                    self.expected[index].add(str(task_id))

        await asyncio.gather(*(writer() for _ in range(self.args.writers)))

    def outstanding(self) -> int:
        """Deliveries committed but not yet received."""
        return sum(
            len(expected - follower.task_arrived.keys())
            for follower, expected in zip(self.followers, self.expected, strict=True)
        )

    async def drain(self) -> float:
        """Wait until nothing is pending and every client has its events; the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < self.args.settle:
            pending = (await self.outbox_numbers())[0]
            if pending == 0 and self.outstanding() == 0:
                break
            await asyncio.sleep(0.25)
        return time.monotonic() - started


async def run_load(
    url: str, database_url: str, args: argparse.Namespace, children: dict[str, Child]
) -> dict[str, Any]:
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    timings: dict[str, float] = {}
    started = time.monotonic()
    print(f"making {args.clients} members through the app's services ...", flush=True)
    families = await create_families(
        database_url,
        args.clients // args.family_size,
        args.family_size,
        token_ttl_seconds=token_ttl(args),
    )
    timings["signup_s"] = time.monotonic() - started
    followers = [Follower(member, url) for family in families for member in family]
    print(f"connecting {len(followers)} Socket.IO clients ...", flush=True)
    started = time.monotonic()
    await connect_all(followers)
    timings["connect_s"] = time.monotonic() - started
    engine = create_engine(database_url, pool_size=args.writers)
    sessionmaker = create_sessionmaker(engine, info=notify_channel_info(OUTBOX_CHANNEL))
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    soak = Soak(args, database_url, children, families, followers, conn)
    soak.expected = [set() for _ in followers]
    try:
        rows_before = (await soak.outbox_numbers())[2]
        cur = await conn.execute("SHOW autovacuum")
        autovacuum = str((await cur.fetchone() or ("?",))[0])
        load = {"start": load_average()}
        print(
            f"offering {args.rate:g} events/s for {args.seconds:g} s"
            f" (RSS baseline after {args.warmup:g} s) ...",
            flush=True,
        )
        cpu_before = cpu_snapshot_with_server(children, dbname)
        soak.load_started = time.monotonic()
        async with soak.sampling("load"):
            await soak.offer(sessionmaker, soak.load_started + args.seconds)
        load_seconds = time.monotonic() - soak.load_started
        cpu = with_other_processes(
            cpu_percent(cpu_before, cpu_snapshot_with_server(children, dbname))
        )
        soak.phase = "stop"
        await soak.sample()  # the end of the load: what the RSS growth is measured against
        load["end of load"] = load_average()
        print("load over; waiting for the backlog to drain and the clients to catch up ...")
        async with soak.sampling("drain"):
            drain_seconds = await soak.drain()
            await asyncio.sleep(1.0)  # late copies still count as duplicates
        soak.phase = "end"
        await soak.sample()
        heads = await stream_heads(conn, [user_stream(f.member.id) for f in followers])
        lost_rows = await outbox_rows_of(conn, missing_task_ids(soak)[:10])
        vacuum = await vacuum_stats(conn)
    finally:
        await asyncio.gather(*(f.disconnect() for f in followers))
        await conn.close()
        await engine.dispose()
    return analyse(soak, rows_before, load_seconds, drain_seconds, cpu, heads, lost_rows) | {
        "vacuum": vacuum,
        "server_autovacuum": autovacuum,
        "setup": {k: round(v, 1) for k, v in timings.items()},
        "load_average": load,
    }


async def stream_heads(conn: psycopg.AsyncConnection[Any], streams: list[str]) -> list[int]:
    cur = await conn.execute(
        "SELECT stream, last_seq FROM stream_sequences WHERE stream = ANY(%s)", (streams,)
    )
    heads = {stream: int(last_seq) for stream, last_seq in await cur.fetchall()}
    return [heads.get(stream, 0) for stream in streams]


async def vacuum_stats(conn: psycopg.AsyncConnection[Any]) -> dict[str, dict[str, Any]]:
    """Live and dead tuples and autovacuum runs of the outbox tables: purged rows are only dead
    tuples until a vacuum frees their space for reuse."""
    cur = await conn.execute(
        "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, vacuum_count"
        " FROM pg_stat_user_tables WHERE relname IN ('outbox_events', 'outbox_recipients')"
        " ORDER BY relname"
    )
    columns = ("live", "dead", "autovacuums", "vacuums")
    return {
        row[0]: dict(zip(columns, (int(v) for v in row[1:]), strict=True))
        for row in await cur.fetchall()
    }


def missing_task_ids(soak: Soak) -> list[str]:
    return sorted(
        task_id
        for follower, expected in zip(soak.followers, soak.expected, strict=True)
        for task_id in expected - follower.task_arrived.keys()
    )


async def outbox_rows_of(
    conn: psycopg.AsyncConnection[Any], task_ids: list[str]
) -> list[dict[str, Any]]:
    """What the outbox says about events that did not arrive (absent: purged by retention)."""
    cur = await conn.execute(
        "SELECT payload->>'taskId', id, status, attempts, last_error FROM outbox_events"
        " WHERE payload->>'taskId' = ANY(%s)",
        (task_ids,),
    )
    found = {row[0]: row for row in await cur.fetchall()}
    columns = ("id", "status", "attempts", "last_error")
    return [
        {"task_id": t} | (dict(zip(columns, found[t][1:], strict=True)) if t in found else {})
        for t in task_ids
    ]


# -- numbers and checks ----------------------------------------------------------------------


def purged_in_log(log_path: Path) -> tuple[int, int]:
    """Rows the dispatcher logged as purged, and in how many purge runs."""
    rows = runs = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if PURGE_LOG_MESSAGE not in line:
            continue
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            rows += int(record.get("rows", 0))
            runs += 1
    return rows, runs


def log_problems(log_path: Path) -> dict[str, Any]:
    """Tracebacks and WARNING/ERROR records in a process's log, with a few distinct ones."""
    tracebacks = warnings = errors = 0
    examples: list[str] = []
    for line in log_path.read_text(errors="replace").splitlines():
        tracebacks += line.startswith("Traceback")
        level = ""
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                level = str(record.get("levelname", ""))
                line = f"{level} {record.get('name', '')}: {record.get('message', '')}"
        elif line.startswith(("ERROR", "WARNING")):
            level = line.split(":", 1)[0]
        warnings += level == "WARNING"
        errors += level in ("ERROR", "CRITICAL")
        notable = (level or line.startswith("Traceback")) and level != "INFO"
        if notable and len(examples) < 5 and line[:120] not in (e[:120] for e in examples):
            examples.append(line[:300])
    return {"tracebacks": tracebacks, "warnings": warnings, "errors": errors, "examples": examples}


def rss_trend_kib_per_min(samples: list[Sample], key: str) -> float:
    """Least-squares slope of an RSS series, in KiB per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [s.t for s in samples]
    ys = [float(getattr(s, key)) for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return round(slope * 60, 1)


def memory(samples: list[Sample], warmup: float, key: str) -> dict[str, Any]:
    """RSS at the first sample past the warm-up and at the end of the load; growth in %."""
    end = next(s for s in samples if s.phase == "stop")  # taken as the load stopped
    warm = next((s for s in samples if s.phase == "load" and s.t >= warmup), end)
    after = [s for s in samples if s.phase in ("load", "stop") and s.t >= warm.t]
    warm_kib, end_kib = getattr(warm, key), getattr(end, key)
    return {
        "warm_t_s": warm.t,
        "warm_kib": warm_kib,
        "end_t_s": end.t,
        "end_kib": end_kib,
        "growth_percent": round(100 * (end_kib - warm_kib) / warm_kib, 2),
        "peak_kib": max(getattr(s, key) for s in samples),
        "trend_kib_per_min": rss_trend_kib_per_min(after, key),
        "after_drain_kib": getattr(samples[-1], key),
    }


def analyse(
    soak: Soak,
    rows_before: int,
    load_seconds: float,
    drain_seconds: float,
    cpu: dict[str, float],
    heads: list[int],
    lost_rows: list[dict[str, Any]],
) -> dict[str, Any]:
    args = soak.args
    latencies: list[float] = []
    committed_at = {offer.task_id: offer.committed for offer in soak.offers}
    received = foreign = 0
    for follower, expected in zip(soak.followers, soak.expected, strict=True):
        for task_id, arrived in follower.task_arrived.items():
            if task_id in expected:
                received += 1
                latencies.append(arrived - committed_at[task_id])
            else:
                foreign += 1
    expected_total = sum(len(e) for e in soak.expected)
    followers = soak.followers
    positions = [f.position or 0 for f in followers]
    end_sample = soak.samples[-1]
    load_samples = [s for s in soak.samples if s.phase != "end"]
    log_rows, log_runs = purged_in_log(soak.children["dispatcher"].log_path)
    # Every row ever inserted is either still there or was deleted (only retention deletes).
    purged_by_count = rows_before + len(soak.offers) - end_sample.rows
    return {
        "events": {
            "committed": len(soak.offers),
            "offered_rate": args.rate,
            "achieved_rate": round(len(soak.offers) / load_seconds, 1),
            "late_commits": soak.late_commits,
            "commit_errors": len(soak.commit_errors),
            "commit_error_examples": soak.commit_errors[:5],
            "load_seconds": round(load_seconds, 1),
        },
        "deliveries": {
            "expected": expected_total,
            "received": received,
            "duplicates": sum(f.duplicates for f in followers),
            "missing": expected_total - received,
            "misdelivered": foreign,
            "out_of_order": sum(f.out_of_order for f in followers),
            "missing_examples": lost_rows,
        },
        "clients": {
            "count": len(followers),
            "connected_at_end": end_sample.connected,
            "disconnects": sum(f.disconnects for f in followers),
            "reconnects": sum(f.connects for f in followers) - len(followers),
            "resyncs": sum(len(f.resyncs) for f in followers),
            "gap_requests": sum(f.gap_requests for f in followers),
            "resync_requests": sum(f.resync_requests for f in followers),
            "refused_requests": sum(f.refused_requests for f in followers),
            # A new client's first sync says "not recovered" by design: not a refetch.
            "refetches": sum(f.refetches - 1 for f in followers),
            # Position short of the stream's head: a hole the client never filled.
            "unsettled": sum(p < h for p, h in zip(positions, heads, strict=True)),
        },
        "latency_commit_to_client_ms": summarize_ms(latencies),
        "rss": {
            "web": memory(soak.samples, args.warmup, "web_rss_kib"),
            "dispatcher": memory(soak.samples, args.warmup, "dispatcher_rss_kib"),
        },
        "outbox": {
            "max_backlog": max(s.pending for s in load_samples),
            "backlog_limit": round(args.backlog_limit_seconds * args.rate),
            "drain_s": round(drain_seconds, 2),
            "pending_at_end": end_sample.pending,
            "dead_at_end": end_sample.dead,
            "rows_before_load": rows_before,
            "rows_peak": max(s.rows for s in soak.samples),
            "rows_at_end": end_sample.rows,
            "steady_rows_estimate": round(
                (args.retention_seconds + args.purge_interval) * args.rate
            ),
            "kib_at_warmup": next(
                (s.outbox_kib for s in load_samples if s.t >= args.warmup), end_sample.outbox_kib
            ),
            "kib_peak": max(s.outbox_kib for s in soak.samples),
            "kib_at_end": end_sample.outbox_kib,
            "purged_by_count": purged_by_count,
            "purged_in_log": log_rows,
            "purge_runs_in_log": log_runs,
        },
        "cpu_percent_during_load": cpu,
        "logs": {name: log_problems(child.log_path) for name, child in soak.children.items()},
        "samples": [asdict(s) for s in soak.samples],
    }


def checks(results: dict[str, Any], args: argparse.Namespace) -> dict[str, tuple[bool, str]]:
    """Each criterion: passed, and the numbers behind it."""
    deliveries, outbox, rss = results["deliveries"], results["outbox"], results["rss"]
    verdicts: dict[str, tuple[bool, str]] = {
        "no delivery missing": (deliveries["missing"] == 0, f"missing {deliveries['missing']}"),
        "no delivery to a non-recipient": (
            deliveries["misdelivered"] == 0,
            f"misdelivered {deliveries['misdelivered']}",
        ),
        "every commit succeeded": (
            results["events"]["commit_errors"] == 0,
            f"commit errors {results['events']['commit_errors']}",
        ),
    }
    for name in ("web", "dispatcher"):
        growth = rss[name]["growth_percent"]
        verdicts[f"{name} RSS growth after warm-up < {args.rss_growth_limit:g}%"] = (
            growth < args.rss_growth_limit,
            f"{growth:+.1f}%",
        )
    verdicts["backlog bounded"] = (
        outbox["max_backlog"] < outbox["backlog_limit"],
        f"max {outbox['max_backlog']} < {outbox['backlog_limit']}"
        f" ({args.backlog_limit_seconds:g} s of events)",
    )
    # Rows become purgeable a retention window after their delivery, and the purge job runs
    # once per interval: only a load longer than both must have seen a purge.
    if args.seconds >= args.retention_seconds + args.purge_interval:
        purged = max(outbox["purged_by_count"], outbox["purged_in_log"])
        verdicts["retention purged rows"] = (purged > 0, f"{purged} rows")
    if args.p99_budget_ms is not None:
        events = results["events"]
        p99 = results["latency_commit_to_client_ms"].get("p99", math.inf)
        verdicts[f"offered rate reached (>= {RATE_REACHED:.0%})"] = (
            events["achieved_rate"] >= RATE_REACHED * args.rate,
            f"{events['achieved_rate']:g} of {args.rate:g} events/s",
        )
        verdicts[f"commit -> client p99 <= {args.p99_budget_ms:g} ms"] = (
            p99 <= args.p99_budget_ms,
            f"p99 {p99:.1f} ms",
        )
    return verdicts


def budget_row(results: dict[str, Any], args: argparse.Namespace, limit_ms: float) -> BudgetRow:
    """The sustained-load budget of docs/design.md, as docs/benchmarks.md shows it."""
    events, latency = results["events"], results["latency_commit_to_client_ms"]
    cpu = results["cpu_percent_during_load"]
    return BudgetRow(
        what=f"sustained: {args.rate:g} events/s offered for {args.seconds:g} s,"
        f" {args.clients} clients, commit → client p99",
        measured=f"p99 {latency.get('p99', math.inf):.1f} ms (p50 {latency.get('p50', 0):.1f});"
        f" {events['achieved_rate']:g} events/s committed, {results['deliveries']['missing']}"
        f" missing; CPU % of one core: postgres {cpu['postgres_all']:g}, driver"
        f" {cpu['driver']:g}, dispatcher {cpu['dispatcher']:g}, web {cpu['web']:g}",
        baseline="",
        ratio=None,
        budget=f"p99 <= {limit_ms:g} ms, nothing lost, >= {RATE_REACHED:.0%} of the rate",
        passed=latency.get("p99", math.inf) <= limit_ms
        and results["deliveries"]["missing"] == 0
        and events["achieved_rate"] >= RATE_REACHED * args.rate,
    )


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def report(results: dict[str, Any], args: argparse.Namespace) -> bool:
    """Print the summary; return whether every check passed."""
    cores = os.cpu_count() or 1
    ev, dl, cl = results["events"], results["deliveries"], results["clients"]
    ob, lat = results["outbox"], results["latency_commit_to_client_ms"]
    families = args.clients // args.family_size
    print(
        f"\nSoak: 1 web + 1 dispatcher, {args.clients} clients ({families} families x"
        f" {args.family_size}), {args.rate:g} events/s offered for {args.seconds:g} s,"
        f" {cores} cores"
    )
    print(f"  code under test: {results['source']}")
    print(
        "  load average (1/5/15m): "
        + "; ".join(f"{k} {v}" for k, v in results["load_average"].items())
    )
    setup = results["setup"]
    print(f"  set-up: members {setup['signup_s']:g} s, connect {setup['connect_s']:g} s")
    print("events")
    print(
        f"  committed: {ev['committed']} in {ev['load_seconds']:g} s ({ev['achieved_rate']:g}/s"
        f" achieved), {ev['late_commits']} over 1 s behind schedule,"
        f" {ev['commit_errors']} commit errors"
    )
    for example in ev["commit_error_examples"]:
        print(f"    {example}")
    print(f"  deliveries expected: {dl['expected']}")
    print(f"  received: {dl['received']}")
    print(f"  duplicates: {dl['duplicates']}")
    print(f"  missing: {dl['missing']}")
    print(f"  misdelivered: {dl['misdelivered']}")
    print(f"  out of order (seq below one seen before, then filled): {dl['out_of_order']}")
    for row in dl["missing_examples"]:
        print(f"    missing task {row}")
    print(
        f"  commit -> client latency ms: p50 {lat.get('p50', 0):.1f}, p99"
        f" {lat.get('p99', 0):.1f}, max {lat.get('max', 0):.1f}, min {lat.get('min', 0):.1f}"
        f" (n {lat['n']}; from the writer's commit returning, in this process: below 0 when a"
        " client took an event in before the writer resumed)"
    )
    print(
        f"  clients: connected at end {cl['connected_at_end']}/{cl['count']}, disconnects"
        f" {cl['disconnects']}, reconnects {cl['reconnects']}, resyncs {cl['resyncs']},"
        f" sync.requests for gaps {cl['gap_requests']} / resyncs {cl['resync_requests']}"
        f" (refused {cl['refused_requests']}), refetches {cl['refetches']},"
        f" unsettled {cl['unsettled']}"
    )
    print("memory (RSS, MiB)")
    for name, m in results["rss"].items():
        print(
            f"  {name}: warm-up (t={m['warm_t_s']:g} s) {mib(m['warm_kib'])} -> end of load"
            f" (t={m['end_t_s']:g} s) {mib(m['end_kib'])} ({m['growth_percent']:+.1f}%),"
            f" peak {mib(m['peak_kib'])}, trend after warm-up"
            f" {m['trend_kib_per_min'] / 1024:+.2f} MiB/min, after the drain"
            f" {mib(m['after_drain_kib'])}"
        )
    print("outbox")
    print(f"  max backlog (pending): {ob['max_backlog']} (limit {ob['backlog_limit']})")
    print(
        f"  rows: before the load {ob['rows_before_load']}, peak {ob['rows_peak']}, at the end"
        f" {ob['rows_at_end']} (steady state about {ob['steady_rows_estimate']} = (retention"
        f" + purge interval) x rate)"
    )
    print(
        f"  size (tables, indexes, TOAST): at warm-up {mib(ob['kib_at_warmup'])} MiB, peak"
        f" {mib(ob['kib_peak'])} MiB, at the end {mib(ob['kib_at_end'])} MiB"
    )
    print(
        "  vacuum (pg_stat_user_tables at the end): "
        + "; ".join(
            f"{table} live {v['live']}, dead {v['dead']}, autovacuums {v['autovacuums']}"
            for table, v in results["vacuum"].items()
        )
    )
    if results["server_autovacuum"] != "on":
        print(
            f"  NOTE: autovacuum is {results['server_autovacuum']} on this server: purged rows"
            " stay dead tuples, so the outbox's size grows although its row count is bounded"
        )
    print(
        f"  purged: {ob['purged_by_count']} rows by count, {ob['purged_in_log']} in the"
        f" dispatcher's log ({ob['purge_runs_in_log']} purges); retention"
        f" {args.retention_seconds:g} s, purge every {args.purge_interval:g} s"
    )
    print(
        f"  drain after the load: {ob['drain_s']:g} s; pending at the end {ob['pending_at_end']},"
        f" dead {ob['dead_at_end']}"
    )
    cpu = results["cpu_percent_during_load"]
    print(
        f"  CPU during the load, % of one core (machine: of {100 * cores}): "
        + ", ".join(f"{k} {v:g}" for k, v in cpu.items())
    )
    for name, problems in results["logs"].items():
        if problems["tracebacks"] or problems["errors"] or problems["warnings"]:
            print(
                f"  {name} log: {problems['tracebacks']} tracebacks, {problems['errors']} errors,"
                f" {problems['warnings']} warnings, e.g.:"
            )
            for example in problems["examples"]:
                print(f"    {example}")
    print_timeline(results["samples"])
    ok = True
    print("checks")
    for name, (passed, detail) in results["checks"].items():
        ok &= passed
        print(f"  {name}: {'PASS' if passed else 'FAIL'} ({detail})")
    if not args.seconds >= args.retention_seconds + args.purge_interval:
        print("  retention purged rows: n/a (the load is shorter than retention + purge interval)")
    if cpu["others"] > OTHERS_CPU_LIMIT:
        print(
            f"WARNING: processes outside this run used {cpu['others']:g}% of a core during the"
            " load (another benchmark?): latency and RSS numbers may be noisy"
        )
    if cpu["driver"] > DRIVER_CPU_LIMIT:
        print(
            f"WARNING: this process (clients + writers) used {cpu['driver']:g}% of a core:"
            " latency includes its own queueing"
        )
    failed = [name for name, (passed, _) in results["checks"].items() if not passed]
    print(f"soak: {'PASS' if ok else 'FAIL: ' + '; '.join(failed)}")
    return ok


def print_timeline(samples: list[dict[str, Any]], rows: int = 12) -> None:
    """About ``rows`` evenly spaced samples, and the last."""
    step = max(1, len(samples) // rows)
    shown = samples[::step]
    if shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    print("timeline")
    print(
        f"  {'t s':>7} {'phase':<6}{'web MiB':>9}{'disp MiB':>9}{'pending':>8}{'rows':>8}"
        f"{'outbox MiB':>11}{'committed':>10}{'conn':>6}{'load1':>7}"
    )
    for s in shown:
        print(
            f"  {s['t']:>7.1f} {s['phase']:<6}{mib(s['web_rss_kib']):>9}"
            f"{mib(s['dispatcher_rss_kib']):>9}{s['pending']:>8}{s['rows']:>8}"
            f"{mib(s['outbox_kib']):>11}"
            f"{s['committed']:>10}{s['connected']:>6}{s['load1']:>7.2f}"
        )


# -- processes -------------------------------------------------------------------------------


def run_system(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start the web and dispatcher processes on ``database_url``; drive the load through them."""
    env = system_env(
        database_url,
        APP_JWT_TTL_SECONDS=str(token_ttl(args)),
        DISPATCHER_RETENTION_DAYS=repr(args.retention_seconds / SECONDS_PER_DAY),
        DISPATCHER_PURGE_INTERVAL_SECONDS=repr(args.purge_interval),
    )
    migrate(database_url, env)
    port = free_port()
    with ExitStack() as stack:
        argv = uvicorn_argv("app.main:create_app", port, "--factory")
        web = start_child("web", argv, env, args.log_dir)
        stack.callback(web.stop)
        argv = [sys.executable, "-m", "dispatcher"]
        dispatcher = start_child("dispatcher", argv, env, args.log_dir)
        stack.callback(dispatcher.stop)
        url = f"http://127.0.0.1:{port}"
        web.wait_for_http(f"{url}/healthz")
        dispatcher.wait_for_log("dispatcher worker started")
        children = {"web": web, "dispatcher": dispatcher}
        try:
            return asyncio.run(run_load(url, database_url, args, children))
        except Exception:
            # A failure is often a process that died under the load: say which, and how.
            for child in children.values():
                if child.process.poll() is not None:
                    print(f"{child.name} exited ({child.process.returncode}):\n{child.log_tail()}")
            raise


def main() -> int:
    args = parse_args()
    # Hundreds of sockets here and in the web process (which inherits the limit).
    raise_fd_limit()
    fresh_log_dir(args.log_dir)
    results = results_header(args)
    with scratch_database(args.database_url, "bench_soak") as database_url:
        results |= run_system(database_url, args)
    results["load_average"]["end"] = load_average()
    verdicts = checks(results, args)
    results["checks"] = verdicts
    ok = report(results, args)
    if args.p99_budget_ms is not None:
        results["rows"] = budget_rows(budget_row(results, args, args.p99_budget_ms))
    results["checks"] = {k: {"passed": p, "detail": d} for k, (p, d) in verdicts.items()}
    results["passed"] = ok
    write_results(results, args.json, args.log_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
