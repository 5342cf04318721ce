"""Fan-out of one event to 10,000 connected users, and a replay storm of 1,000 reconnects.

    .venv/bin/python bench/fanout_replay.py [--users 10000] [--storm-clients 1000] [--behind 50]
        [--client-processes 4] [--rounds 3]

One ``web`` process (``uvicorn app.main:create_app`` with the Procfile's options) and one
``dispatcher``, started once for both phases, on a scratch database with ``--users`` users
(families of four, seeded with COPY, each with an access token in a session of its own). The
sockets are bench/many_sockets.py's raw Engine.IO 4 / Socket.IO 5 clients, split over
``--client-processes`` processes; each notes when every envelope and ``sync`` arrives with
``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process on Linux), so latencies are
taken across processes without clock offsets.

1. Fan-out: every user holds one socket (their connect-time syncs are waited for, then
   dropped). One transaction stages one ``task.deleted`` event (app.outbox.staging.stage, as
   the services do) whose recipients are all the users' streams; the dispatcher delivers it as
   one emit per stream. Latency runs from the commit's return (in this process) to each
   socket's receipt. ``--rounds`` events, one at a time, each once the last has arrived
   everywhere (or ``--settle`` s passed). Each round is also split at the outbox row's
   ``delivered_at`` (the dispatcher's mark, just before its emits): commit -> marked delivered,
   and marked -> last receipt. Every socket must get each event exactly once, with its
   stream's seq for it. Budget: p99 <= 1 s in every round, none lost.
2. Replay storm: the fan-out's sockets are closed (the server forgets them). The first
   ``--storm-clients`` users fall ``--behind`` events behind while away: one transaction stages
   ``--behind`` events to all their streams, and the dispatcher delivers them (to nobody).
   Then all of them reconnect at once, each from its client process on one go line, with
   ``auth: {token, lastSeq}`` (the stream's head before those events). Each must get exactly
   its missed events, seq lastSeq+1..lastSeq+behind in order, then ``sync {recovered: true,
   replayed: behind, missing: 0, lastSeq: lastSeq+behind}``. Measured: from the go to the last
   socket's sync (all recovered), and per client from the start of its connection to its sync.
   Budget: all recovered within 10 s of the reconnect start.

CPU of each process during each phase is printed beside the results. The budgets pass only at
their own scale (10,000 users; 1,000 clients 50 behind): a smaller run is for development.
Prints a table, writes bench/results/fanout_replay.json, exits 1 if a budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
from harness import (
    RESULTS_DIR,
    BudgetRow,
    Child,
    add_database_url_option,
    budget_rows,
    cpu_percent,
    cpu_snapshot,
    free_port,
    fresh_log_dir,
    load_average,
    migrated_database,
    raise_fd_limit,
    results_header,
    run_main,
    start_child,
    summarize_ms,
    system_env,
    uvicorn_argv,
    wait_for_quiet,
    write_results,
)
from many_sockets import Clients, issue_tokens, open_sockets, seed_users
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import text

from app.db import create_engine, create_sessionmaker
from app.outbox.staging import notify_channel_info, stage
from app.outbox.streams import user_stream
from app.tasks.events import TaskDeleted

LOG_DIR = RESULTS_DIR / "fanout_replay-logs"
OUTBOX_CHANNEL = "outbox_events"  # APP_OUTBOX_CHANNEL's default: what the dispatcher LISTENs to
COMPRESSION = "deflate"  # the clients offer permessage-deflate, as browsers do
FANOUT_P99_BUDGET_S = 1.0
STORM_BUDGET_S = 10.0
FULL_USERS, FULL_STORM, FULL_BEHIND = 10_000, 1_000, 50  # the budgets' own scale


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=FULL_USERS, help="connected users, fan-out")
    parser.add_argument(
        "--storm-clients", type=int, default=FULL_STORM, help="users reconnecting at once"
    )
    parser.add_argument("--behind", type=int, default=FULL_BEHIND, help="events each missed")
    parser.add_argument(
        "--client-processes", type=int, default=4, help="client processes the sockets split over"
    )
    parser.add_argument("--rounds", type=int, default=3, help="fan-out events, one at a time")
    parser.add_argument(
        "--concurrency", type=int, default=25, help="fan-out handshakes in flight per process"
    )
    parser.add_argument("--settle", type=float, default=60, help="s to wait for stragglers")
    add_database_url_option(parser)
    parser.add_argument(
        "--quiet-patience",
        type=float,
        help="s to wait for a quiet machine (default: 120 at full scale, 5 for a smaller run)",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 0 < args.storm_clients <= args.users:
        parser.error("--storm-clients must be between 1 and --users")
    if args.quiet_patience is None:
        args.quiet_patience = 120 if args.users >= FULL_USERS else 5
    return args


# -- the outbox side ----------------------------------------------------------------------------


def commit_events(
    database_url: str, task_ids: list[uuid.UUID], streams: list[str], family_id: uuid.UUID
) -> dict[str, float]:
    """One transaction that stages a ``task.deleted`` event per task id, each to every one of
    ``streams``, through the staging API (its commit NOTIFYs the dispatcher). Returns when the
    commit returned (time.monotonic() and time.time()) and how long the transaction took."""

    async def commit() -> dict[str, float]:
        engine = create_engine(database_url, pool_size=1)
        try:
            sessions = create_sessionmaker(engine, info=notify_channel_info(OUTBOX_CHANNEL))
            async with sessions() as session:
                await session.execute(text("SELECT 1"))  # connect first: not timed
            began = time.monotonic()
            async with sessions() as session, session.begin():
                for task_id in task_ids:
                    payload = TaskDeleted(task_id=task_id, family_id=family_id, affected_users=[])
                    stage(session, payload, streams=streams, family_id=family_id)
            committed = time.monotonic()
            return {"mono": committed, "wall": time.time(), "took_s": committed - began}
        finally:
            await engine.dispose()

    return asyncio.run(commit())


def stream_heads(database_url: str, streams: list[str]) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT stream, last_seq FROM stream_sequences WHERE stream = ANY(%s)", (streams,)
        ).fetchall()
    heads = {stream: int(last_seq) for stream, last_seq in rows}
    return {stream: heads.get(stream, 0) for stream in streams}


def outbox_event(database_url: str, task_id: uuid.UUID) -> dict[str, Any]:
    """The event's id, created_at and delivered_at (Unix time), and its seq in each stream."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT id, extract(epoch FROM created_at)::float8,"
            " extract(epoch FROM delivered_at)::float8"
            " FROM outbox_events WHERE payload->>'taskId' = %s",
            (str(task_id),),
        ).fetchone()
        if row is None:
            raise RuntimeError(f"no outbox row for task {task_id}")
        seqs = conn.execute(
            "SELECT stream, seq FROM outbox_recipients WHERE event_id = %s", (row[0],)
        ).fetchall()
    # The envelope's id, as the dispatcher spells it (app.outbox.envelope).
    return {"id": f"evt_{row[0]}", "created": row[1], "delivered": row[2], "seqs": dict(seqs)}


def wait_until_delivered(database_url: str, children: Mapping[str, Child], timeout: float) -> None:
    """Until no outbox row is left pending (the dispatcher has delivered everything)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM outbox_events WHERE status <> 'delivered'"
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            for child in children.values():
                child.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{row[0] if row else '?'} events not delivered in {timeout} s")
            time.sleep(0.1)


def wait_for_idle(child: Child, percent: float = 10, timeout: float = 180) -> float:
    """Until ``child`` uses under ``percent`` % of a core over 2 s (or ``timeout`` s pass);
    returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = child.cpu_seconds()
        time.sleep(2)
        child.check_alive()
        if 100 * (child.cpu_seconds() - before) / 2 < percent:
            break
    return round(time.monotonic() - started, 1)


def clear_presence(database_url: str) -> int:
    """Delete the presence rows left behind (sockets whose removal failed); returns how many.
    The web process has already forgotten those sockets, so nothing brings them back."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("DELETE FROM presence_sockets").rowcount


def cpu_with_clients(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """cpu_percent, with the client processes summed as "clients"."""
    cpu = cpu_percent(before, after)
    clients = sum(v for k, v in cpu.items() if k.startswith("client"))
    kept = {k: v for k, v in cpu.items() if not k.startswith("client")}
    return kept | {"clients": round(clients, 1)}


def with_clients(children: Mapping[str, Child], clients: Clients) -> dict[str, Child]:
    return dict(children) | {f"client{n}": c for n, c in enumerate(clients.children)}


# -- 1. fan-out ---------------------------------------------------------------------------------


def fanout_round(
    database_url: str,
    clients: Clients,
    streams: list[str],
    family_id: uuid.UUID,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Commit one event to every stream; gather each socket's receipt of it."""
    task_id = uuid.uuid4()
    commit = commit_events(database_url, [task_id], streams, family_id)
    sockets = clients.messages(1, args.settle)
    event = outbox_event(database_url, task_id)
    latencies: list[float] = []
    lost = duplicates = wrong_seq = others = 0
    for stream, socket in zip(streams, sockets, strict=True):
        mine = [m for m in socket["messages"] if m[3] == event["id"]]
        others += len(socket["messages"]) - len(mine)
        if not mine:
            lost += 1
            continue
        duplicates += len(mine) - 1
        at, _, seq, _, _ = mine[0]
        wrong_seq += seq != event["seqs"].get(stream)
        latencies.append(at - commit["mono"])
    last = max(latencies, default=0.0)
    delivered = event["delivered"]
    return {
        "event_id": event["id"],
        "sockets": len(sockets),
        "received": len(latencies),
        "lost": lost,
        "duplicates": duplicates,
        "wrong_seq": wrong_seq,
        "other_messages": others,
        "commit_ms": round(commit["took_s"] * 1000, 1),
        "commit_to_receipt_ms": summarize_ms(latencies),
        # The outbox's own clock (Postgres now()) against this process's at the commit.
        "commit_to_marked_delivered_ms": (
            round((delivered - commit["wall"]) * 1000, 1) if delivered else None
        ),
        "marked_delivered_to_last_receipt_ms": (
            round((commit["wall"] + last - delivered) * 1000, 1) if delivered else None
        ),
    }


def measure_fanout(
    url: str,
    database_url: str,
    users: list[tuple[uuid.UUID, uuid.UUID, str]],
    tokens: list[str],
    children: Mapping[str, Child],
    args: argparse.Namespace,
    scratch: Path,
) -> dict[str, Any]:
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    streams = [user_stream(user_id) for user_id, _, _ in users]
    print(f"1. fan-out: connecting {len(tokens):,} sockets ...", flush=True)
    clients = open_sockets(
        "fanout",
        url,
        tokens,
        processes=args.client_processes,
        concurrency=args.concurrency,
        compression=COMPRESSION,
        source_net=10,
        scratch=scratch,
        log_dir=LOG_DIR,
    )
    try:
        opened = clients.read_all()
        connected = sum(a["connected"] for a in opened)
        connect_seconds = max(a["seconds"] for a in opened)
        print(f"  {connected:,}/{len(tokens):,} connected in {connect_seconds:.1f} s", flush=True)
        # Each socket's connect-time sync (no lastSeq: a new client) arrives; drop them.
        syncs = clients.messages(1, args.settle)
        synced = sum(any(m[1] == "sync" for m in s["messages"]) for s in syncs)
        quiet = wait_for_quiet(timeout=args.quiet_patience, label="the fan-out")
        watched = with_clients(children, clients)
        rounds = []
        before = cpu_snapshot(watched, dbname)
        for index in range(args.rounds):
            load = load_average()
            result = fanout_round(database_url, clients, streams, users[0][1], args)
            rounds.append(result | {"load_before": load})
            lat = result["commit_to_receipt_ms"]
            print(
                f"  round {index + 1}: {result['received']:,}/{result['sockets']:,} received,"
                f" p50 {lat.get('p50', 0):,.0f} ms, p99 {lat.get('p99', 0):,.0f} ms,"
                f" max {lat.get('max', 0):,.0f} ms; load {load[0]:.2f}",
                flush=True,
            )
        cpu = cpu_with_clients(before, cpu_snapshot(watched, dbname))
        report = clients.ask()
    finally:
        clients.stop()
    return {
        "users": len(tokens),
        "connected": connected,
        "connect_seconds": round(connect_seconds, 1),
        "synced_on_connect": synced,
        "open_at_end": sum(r["open"] for r in report),
        "failed": sum(r["failed"] for r in report),
        "failure_examples": [f for r in report for f in r["failures"]][:5],
        "quiet": quiet,
        "rounds": rounds,
        "cpu_percent": cpu,
    }


# -- 2. replay storm ----------------------------------------------------------------------------


def storm_problems(
    socket: dict[str, Any], stream: str, last_seq: int, behind: int
) -> tuple[list[str], float | None]:
    """What is wrong with one reconnect that should get last_seq+1..last_seq+behind, then sync;
    and when its sync arrived."""
    messages = socket["messages"]
    syncs = [(at, data) for at, name, _, _, data in messages if name == "sync"]
    events = [(name, seq) for _, name, seq, _, _ in messages if name != "sync"]
    problems = []
    if not socket["opened"]:
        problems.append("not connected")
    if len(syncs) != 1 or messages[-1][1] != "sync":
        problems.append(f"{len(syncs)} syncs, last message {messages[-1][1] if messages else None}")
    if [seq for _, seq in events] != list(range(last_seq + 1, last_seq + behind + 1)):
        seqs = [seq for _, seq in events]
        problems.append(f"seqs not {last_seq + 1}..{last_seq + behind}: {seqs[:3]}..{seqs[-2:]}")
    if {name for name, _ in events} - {"task.deleted"}:
        problems.append(f"other events: {sorted({name for name, _ in events})}")
    want = {"stream": stream, "recovered": True, "replayed": behind, "missing": 0}
    want["lastSeq"] = last_seq + behind
    if syncs and syncs[-1][1] != want:
        problems.append(f"sync {syncs[-1][1]} != {want}")
    return problems, syncs[-1][0] if syncs else None


def measure_storm(
    url: str,
    database_url: str,
    users: list[tuple[uuid.UUID, uuid.UUID, str]],
    tokens: list[str],
    children: Mapping[str, Child],
    args: argparse.Namespace,
    scratch: Path,
) -> dict[str, Any]:
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    count, behind = args.storm_clients, args.behind
    streams = [user_stream(user_id) for user_id, _, _ in users[:count]]
    # The fan-out's sockets have closed: the web process removes their presence rows, then
    # the storm starts from a clean slate (rows whose removal failed would make its users look
    # online already, and spare the web process their announcements).
    idle_after = wait_for_idle(children["web"])
    left = clear_presence(database_url)
    if left:
        print(f"  {left:,} presence rows were left after the fan-out's sockets closed", flush=True)
    heads = stream_heads(database_url, streams)
    print(f"2. replay storm: {count:,} users fall {behind} events behind ...", flush=True)
    task_ids = [uuid.uuid4() for _ in range(behind)]
    commit_events(database_url, task_ids, streams, users[0][1])
    wait_until_delivered(database_url, children, timeout=300)
    wait_for_idle(children["web"])  # it has read the emits of those events (to nobody)
    quiet = wait_for_quiet(timeout=args.quiet_patience, label="the replay storm")
    clients = open_sockets(
        "storm",
        url,
        tokens[:count],
        processes=args.client_processes,
        concurrency=count,  # every socket of a process at once
        compression=COMPRESSION,
        source_net=12,
        scratch=scratch,
        log_dir=LOG_DIR,
        last_seqs=[heads[stream] for stream in streams],
        go=False,
    )
    try:
        watched = with_clients(children, clients)
        load = load_average()
        before = cpu_snapshot(watched, dbname)
        went = clients.go()
        opened = clients.read_all()
        sockets = clients.messages(behind + 1, args.settle)
        cpu = cpu_with_clients(before, cpu_snapshot(watched, dbname))
        report = clients.ask()
    finally:
        clients.stop()
    per_client, connect_acks, failed_examples = [], [], []
    recovered_at: list[float] = []
    for stream, socket in zip(streams, sockets, strict=True):
        problems, synced = storm_problems(socket, stream, heads[stream], behind)
        if socket["opened"] is not None:
            connect_acks.append(socket["opened"] - socket["started"])
        if problems:
            failed_examples.append(f"{stream}: {'; '.join(problems)}")
            continue
        assert synced is not None
        recovered_at.append(synced - went)
        per_client.append(synced - socket["started"])
    all_recovered = len(recovered_at) == count
    return {
        "clients": count,
        "behind": behind,
        "web_idle_after_fanout_s": idle_after,
        # Sockets whose presence removal failed when the fan-out's sockets all closed at once.
        "presence_rows_left_from_fanout": left,
        "connected": sum(a["connected"] for a in opened),
        "recovered": len(recovered_at),
        "all_recovered_s": round(max(recovered_at), 3) if all_recovered else None,
        "last_recovered_s": round(max(recovered_at), 3) if recovered_at else None,
        "start_to_sync_ms": summarize_ms(per_client),
        "start_to_connect_ack_ms": summarize_ms(connect_acks),
        "problems": len(failed_examples),
        "problem_examples": failed_examples[:5],
        "failed": sum(r["failed"] for r in report),
        "failure_examples": [f for r in report for f in r["failures"]][:5],
        "quiet": quiet,
        "load_before": load,
        "cpu_percent": cpu,
    }


# -- the run ------------------------------------------------------------------------------------


def measure(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    env = system_env(database_url, APP_SOCKETIO_CHANNEL=f"bench-sio-{uuid.uuid4().hex[:8]}")
    print(f"seeding {args.users:,} users ...", flush=True)
    users = seed_users(database_url, args.users)
    tokens = issue_tokens(database_url, users)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        web = start_child(
            "web", uvicorn_argv("app.main:create_app", port, "--factory"), env, LOG_DIR
        )
        stack.callback(web.stop)
        dispatcher = start_child("dispatcher", [sys.executable, "-m", "dispatcher"], env, LOG_DIR)
        stack.callback(dispatcher.stop)
        web.wait_for_http(f"{url}/healthz")
        dispatcher.wait_for_log("dispatcher worker started")
        children = {"web": web, "dispatcher": dispatcher}
        fanout = measure_fanout(url, database_url, users, tokens, children, args, Path(scratch))
        storm = measure_storm(url, database_url, users, tokens, children, args, Path(scratch))
        for child in children.values():
            child.check_alive()
    return {"fanout": fanout, "storm": storm}


def report(results: dict[str, Any], args: argparse.Namespace) -> bool:
    """Print the tables, add the budget rows; return whether both budgets were met."""
    fanout, storm = results["fanout"], results["storm"]
    print(
        f"\nFan-out and replay storm: 1 web, 1 dispatcher, {args.client_processes} client processes"
    )
    print(f"  code under test: {results['source']}")
    print(
        f"  load average (1/5/15 min): start {results['load_average_start']},"
        f" end {results['load_average_end']}"
    )
    print(
        f"\n1. Fan-out of one event to each of {fanout['users']:,} users"
        f" ({fanout['connected']:,} connected in {fanout['connect_seconds']} s)"
    )
    print(
        f"  {'round':<7}{'received':>10}{'lost':>6}{'dup':>5}{'seq!':>5}{'commit':>8}"
        f"{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'->marked':>10}{'->last':>8}  load"
    )
    for n, r in enumerate(fanout["rounds"], 1):
        lat = r["commit_to_receipt_ms"]
        print(
            f"  {n:<7}{r['received']:>10,}{r['lost']:>6}{r['duplicates']:>5}{r['wrong_seq']:>5}"
            f"{r['commit_ms']:>8.0f}{lat.get('p50', 0):>8.0f}{lat.get('p90', 0):>8.0f}"
            f"{lat.get('p99', 0):>8.0f}{lat.get('max', 0):>8.0f}"
            f"{r['commit_to_marked_delivered_ms'] or 0:>10.0f}"
            f"{r['marked_delivered_to_last_receipt_ms'] or 0:>8.0f}  {r['load_before'][0]:.2f}"
        )
    print(
        "  ms; commit: the staging transaction; p50..max: its commit's return -> receipt;"
        " ->marked: commit -> the\n  dispatcher's delivered_at; ->last: delivered_at -> the"
        " last receipt"
    )
    cpu = ", ".join(f"{k} {v:g}" for k, v in fanout["cpu_percent"].items())
    print(f"  CPU during the rounds, % of one core: {cpu}")
    if fanout["failure_examples"]:
        print(f"  socket failures ({fanout['failed']}), e.g.: {fanout['failure_examples'][0]}")
    worst = max(r["commit_to_receipt_ms"].get("p99", float("inf")) for r in fanout["rounds"])
    worst_max = max(r["commit_to_receipt_ms"].get("max", float("inf")) for r in fanout["rounds"])
    lost = sum(r["lost"] + r["duplicates"] + r["wrong_seq"] for r in fanout["rounds"])
    fanout_scale = args.users >= FULL_USERS
    fanout_ok = bool(
        fanout_scale
        and fanout["connected"] == args.users
        and lost == 0
        and worst <= FANOUT_P99_BUDGET_S * 1000
    )
    print(
        f"  budget: p99 <= 1 s in every round, none lost: worst p99 {worst:,.0f} ms,"
        f" {lost} lost/duplicated/misnumbered  {'PASS' if fanout_ok else 'FAIL'}"
        + ("" if fanout_scale else f" (only {args.users:,} users asked for)")
    )

    print(
        f"\n2. Replay storm: {storm['clients']:,} clients each {storm['behind']} behind reconnect"
        " at once"
    )
    acks, syncs = storm["start_to_connect_ack_ms"], storm["start_to_sync_ms"]
    print(
        f"  {storm['connected']:,} connected; {storm['recovered']:,} got exactly their"
        f" {storm['behind']} events in order, then sync recovered=true"
    )
    if storm["last_recovered_s"] is not None:
        print(f"  the last of them {storm['last_recovered_s']:.2f} s after the go")
    print(
        f"  per client, ms from its connection's start: CONNECT answered p50"
        f" {acks.get('p50', 0):,.0f}"
        f" p99 {acks.get('p99', 0):,.0f}; sync p50 {syncs.get('p50', 0):,.0f}"
        f" p99 {syncs.get('p99', 0):,.0f} max {syncs.get('max', 0):,.0f}"
    )
    cpu = ", ".join(f"{k} {v:g}" for k, v in storm["cpu_percent"].items())
    print(f"  CPU during the storm, % of one core: {cpu}")
    if left := storm["presence_rows_left_from_fanout"]:
        print(
            f"  (before it: {left:,} presence rows were left behind when the fan-out's"
            " sockets closed at once; deleted)"
        )
    for example in storm["problem_examples"]:
        print(f"    {example}")
    if storm["failure_examples"]:
        print(f"  socket failures ({storm['failed']}), e.g.: {storm['failure_examples'][0]}")
    storm_scale = args.storm_clients >= FULL_STORM and args.behind >= FULL_BEHIND
    all_s = storm["all_recovered_s"]
    storm_ok = bool(storm_scale and all_s is not None and all_s <= STORM_BUDGET_S)
    print(
        f"  budget: all recovered <= 10 s: {'all' if all_s is not None else 'NOT all'} recovered"
        + (f" in {all_s:.2f} s" if all_s is not None else "")
        + f"  {'PASS' if storm_ok else 'FAIL'}"
        + ("" if storm_scale else f" (only {args.storm_clients:,} x {args.behind} asked for)")
    )
    results["rows"] = budget_rows(
        BudgetRow(
            what=f"fan-out of one event to each of {args.users:,} connected users",
            measured=f"p99 {worst:,.0f} ms (worst of {len(fanout['rounds'])} rounds),"
            f" max {worst_max:,.0f} ms, {lost} lost",
            baseline="",
            ratio=None,
            budget="p99 <= 1 s, none lost",
            passed=fanout_ok,
        ),
        BudgetRow(
            what=f"replay storm: {args.storm_clients:,} clients each {args.behind} behind"
            " reconnect at once",
            measured=(
                f"all recovered in {all_s:.2f} s"
                if all_s is not None
                else f"{storm['recovered']:,}/{storm['clients']:,} recovered"
            )
            + f"; per client p99 {syncs.get('p99', 0):,.0f} ms",
            baseline="",
            ratio=None,
            budget="all recovered <= 10 s",
            passed=storm_ok,
        ),
    )
    results["budget"] = {"fanout": fanout_ok, "storm": storm_ok}
    return fanout_ok and storm_ok


def main() -> int:
    args = parse_args()
    limit = raise_fd_limit()
    if limit < args.users + 1000:
        print(f"open-files limit is {limit}: too low for {args.users} sockets", file=sys.stderr)
        return 2
    fresh_log_dir(LOG_DIR)
    results = results_header(args) | {"fd_limit": limit, "load_average_start": load_average()}
    with migrated_database(args.database_url, "bench_fanout") as database_url:
        results |= measure(database_url, args)
    results["load_average_end"] = load_average()
    ok = report(results, args)
    write_results(results, RESULTS_DIR / "fanout_replay.json", LOG_DIR)
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
