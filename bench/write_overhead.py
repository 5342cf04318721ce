"""What the outbox costs the write path: mutation throughput at 16 concurrent writers.

    .venv/bin/python bench/write_overhead.py [--writers 16] [--processes 2] [--seconds 15]

The mutation is the service call behind ``POST /v1/families/{id}/tasks``:
``app.tasks.service.create_task`` (assignees looked up, task + assignment rows inserted, the
``task.created`` payload built), each in its own transaction opened and committed the way
``app.db.transaction`` does it, through the app's engine and session factory. ``--writers``
asyncio writers, split over ``--processes`` worker processes (same split for every mode), each
writer creating tasks for its own child (its own event stream, as different users' requests
would), for ``--seconds`` after a warm-up. Three modes, interleaved over ``--rounds`` rounds:

- outbox:    as deployed: the outbox row + recipient row + stream sequence at commit, and one
             NOTIFY per transaction (``notify_channel_info("outbox_events")``).
- no_outbox: the baseline: the same call with the event never staged.
             ``app.tasks.events.record_created`` (which create_task looks up on the module at
             every call) is replaced by a no-op inside the worker processes only, so neither the
             payload is built nor anything written at commit.
- no_notify: the outbox rows without the NOTIFY (``notify_channel_info(None)``).

A LISTEN connection (standing in for the dispatcher's) consumes the NOTIFYs; nothing drains the
outbox unless ``--with-dispatcher`` runs the real one throughout (all modes). Before every
phase the written tables are emptied, vacuumed and checkpointed, and the machine is let settle.
Prints a table, writes bench/results/write_overhead.json, exits 1 if the budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
import uuid
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
    cpu_snapshot_with_server,
    fresh_log_dir,
    load_average,
    migrated_database,
    percentile,
    results_header,
    run_main,
    start_child,
    system_env,
    wait_for_quiet,
    with_other_processes,
    write_results,
)
from psycopg.conninfo import conninfo_to_dict

MODES = {
    "no_outbox": "no outbox (event never staged)  [baseline]",
    "outbox": "outbox row + seq + 1 NOTIFY/tx  [as deployed]",
    "no_notify": "outbox row + seq, NOTIFY off",
}
BUDGET_PERCENT = 20.0
NOTIFY_RATIO_BUDGET = 0.8  # throughput with NOTIFY on over NOTIFY off, at 64 writers
WRITTEN_TABLES = "tasks, outbox_events, outbox_recipients, stream_sequences"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=16, help="concurrent writers in all")
    parser.add_argument("--processes", type=int, default=2, help="worker processes they share")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds first")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three modes")
    parser.add_argument(
        "--with-dispatcher",
        action="store_true",
        help="run the real dispatcher throughout (it drains the outbox while writers write)",
    )
    add_database_url_option(parser)
    args = parser.parse_args()
    if args.writers % args.processes:
        parser.error("--writers must be a multiple of --processes")
    return args


# --- the worker process (``write_overhead.py --worker PARENT FAMILY CHILD,CHILD,...``) --------


async def worker_main(parent_id: str, family_id: str, child_ids: list[str]) -> None:
    """Answer each stdin line ``MODE START_AT WARMUP SECONDS`` with one JSON line of results."""
    import app.models  # noqa: F401  (every table: tasks' foreign keys name other domains' tables)
    from app.db import create_engine, create_sessionmaker
    from app.families.models import User
    from app.outbox.staging import notify_channel_info
    from app.settings import get_settings
    from app.tasks import events as task_events
    from app.tasks import service as task_service

    settings = get_settings()
    # One pooled connection per writer, as a web process would have at this concurrency.
    engine = create_engine(settings.database_url, pool_size=len(child_ids))
    makers = {
        "outbox": create_sessionmaker(engine, info=notify_channel_info(settings.outbox_channel)),
        "no_outbox": create_sessionmaker(engine, info=notify_channel_info(None)),
        "no_notify": create_sessionmaker(engine, info=notify_channel_info(None)),
    }
    staged = task_events.record_created

    def not_staged(**_: Any) -> None:
        return None

    async with makers["outbox"]() as session:
        parent = await session.get(User, uuid.UUID(parent_id))
    assert parent is not None
    family = uuid.UUID(family_id)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        mode, start_at, warmup, seconds = line.split()
        task_events.record_created = not_staged if mode == "no_outbox" else staged
        window_start = float(start_at) + float(warmup)
        window = (window_start, window_start + float(seconds))
        await asyncio.sleep(max(0.0, float(start_at) - time.time()))
        writers = [
            write_tasks(makers[mode], task_service.create_task, parent, family, child, window)
            for child in child_ids
        ]
        results = await asyncio.gather(*writers)
        task_events.record_created = staged
        latencies = [took for mine, _ in results for took in mine]
        errors = sum(failed for _, failed in results)
        print(json.dumps({"committed": len(latencies), "errors": errors, "latencies": latencies}))
        sys.stdout.flush()
    await engine.dispose()


async def write_tasks(
    maker: Any,
    create_task: Any,
    parent: Any,
    family: uuid.UUID,
    child: str,
    window: tuple[float, float],
) -> tuple[list[float], int]:
    """One writer: create tasks for ``child`` back to back until the window ends; return the
    latencies of the transactions that committed inside it, and how many failed."""
    from app.tasks.schemas import TaskCreate

    data = TaskCreate(title="Feed the cat", assigned_to=[uuid.UUID(child)])
    latencies: list[float] = []
    errors = 0
    while time.time() < window[1]:
        began = time.perf_counter()
        try:
            async with maker() as session, session.begin():
                await create_task(session=session, actor=parent, family_id=family, data=data)
        except Exception:  # counted, not fatal: the table says how many; the log says why
            if not errors:
                traceback.print_exc()
            errors += 1
            continue
        took = time.perf_counter() - began
        if window[0] <= time.time() < window[1]:
            latencies.append(took)
    return latencies, errors


# --- the bench ---------------------------------------------------------------------------------


def seed(database_url: str, children: int) -> tuple[str, str, list[str]]:
    """A family: a parent (the writers' actor) and one child per writer."""
    family_id, parent_id = uuid.uuid4(), uuid.uuid4()
    child_ids = [uuid.uuid4() for _ in range(children)]
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO families (id, name) VALUES (%s, 'Bench')", (family_id,))
        rows = [(parent_id, "parent")] + [(child, "child") for child in child_ids]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO users (id, family_id, email, display_name, role, password_hash)"
                " VALUES (%s, %s, %s, 'Bench', %s, 'x')",
                [(uid, family_id, f"{uid}@bench.test", role) for uid, role in rows],
            )
    return str(parent_id), str(family_id), [str(c) for c in child_ids]


def reset(database_url: str) -> None:
    """Empty what the writers write, so every phase starts from the same tables and no dirty
    pages (the checkpoint also makes every phase pay the same full-page writes)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {WRITTEN_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


async def consume_notifies(database_url: str, channel: str, stop: asyncio.Event) -> int:
    """LISTEN as the dispatcher's listener does; return how many notifications arrived."""
    received = 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(f"LISTEN {channel}")
        while not stop.is_set():
            async for _ in conn.notifies(timeout=0.2):
                received += 1
    return received


class Listener:
    """consume_notifies in a thread of its own, for the bench's synchronous main line."""

    def __init__(self, database_url: str, channel: str) -> None:
        import threading

        self.received = 0
        self._stop = asyncio.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            self.received = self._loop.run_until_complete(
                consume_notifies(database_url, channel, self._stop)
            )

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def close(self) -> int:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)
        return self.received


def run_phase(
    workers: list[Child], mode: str, args: argparse.Namespace, dbname: str, others: dict[str, Child]
) -> dict[str, Any]:
    start_at = time.time() + 0.5
    for worker in workers:
        assert worker.process.stdin is not None
        worker.process.stdin.write(f"{mode} {start_at} {args.warmup} {args.seconds}\n")
        worker.process.stdin.flush()
    children = {w.name: w for w in workers} | others
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    before = cpu_snapshot_with_server(children, dbname)
    time.sleep(max(0.0, start_at + args.warmup + args.seconds - time.time()))
    after = cpu_snapshot_with_server(children, dbname)
    latencies: list[float] = []
    errors = 0
    for worker in workers:
        assert worker.process.stdout is not None
        line = worker.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{worker.name} failed:\n{worker.log_tail()}")
        result = json.loads(line)
        latencies += result["latencies"]
        errors += result["errors"]
    latencies.sort()
    cpu = cpu_percent(before, after)
    cpu["workers"] = round(sum(cpu.pop(w.name) for w in workers), 1)
    cpu = with_other_processes(cpu)
    return {
        "committed": len(latencies),
        "errors": errors,
        "tx_per_s": round(len(latencies) / args.seconds, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5) * 1000, 2) if latencies else None,
            "p99": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        },
        "cpu_percent_of_one_core": cpu,
    }


def check_rows(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM outbox_events)"
        ).fetchone()
    assert row is not None
    return {"tasks": row[0], "outbox_events": row[1]}


def measure(database_url: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    per_process = args.writers // args.processes
    parent_id, family_id, child_ids = seed(database_url, args.writers)
    env = system_env(database_url)
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    phases: list[dict[str, Any]] = []
    with ExitStack() as stack:
        others: dict[str, Child] = {}
        if args.with_dispatcher:
            argv = [sys.executable, "-m", "dispatcher"]
            dispatcher = start_child("dispatcher", argv, env, log_dir)
            stack.callback(dispatcher.stop)
            dispatcher.wait_for_log("dispatcher worker started", timeout=60)
            others["dispatcher"] = dispatcher
        else:
            from app.settings import Settings

            # Only the channel's name is read: the development defaults do.
            channel = Settings(environment="development").outbox_channel
            listener = Listener(database_url, channel)
            stack.callback(listener.close)
        workers = []
        for index in range(args.processes):
            mine = child_ids[index * per_process : (index + 1) * per_process]
            argv = [sys.executable, __file__, "--worker", parent_id, family_id, ",".join(mine)]
            worker = start_child(f"worker{index}", argv, env, log_dir, pipes=True)
            stack.callback(worker.stop)
            workers.append(worker)
        for worker in workers:
            assert worker.process.stdout is not None
            if worker.process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{worker.name} did not start:\n{worker.log_tail()}")
        order = list(MODES)
        for round_index in range(args.rounds):
            # ABC, CBA, ...: a drift in the machine's speed hits every mode alike.
            for mode in order if round_index % 2 == 0 else order[::-1]:
                reset(database_url)
                label = f"{mode}, round {round_index + 1}"
                print(f"{label} ...", flush=True)
                quiet = wait_for_quiet(label=label)
                load_before = load_average()
                result = run_phase(workers, mode, args, dbname, others)
                result |= {
                    "mode": mode,
                    "round": round_index + 1,
                    "rows": check_rows(database_url),
                    "quiet": quiet,
                    "load_before": load_before,
                    "load_after": load_average(),
                }
                phases.append(result)
                print(
                    f"  {result['tx_per_s']:>8,.1f} tx/s  p50 {result['latency_ms']['p50']} ms"
                    f"  p99 {result['latency_ms']['p99']} ms  errors {result['errors']}"
                    f"  load {load_before} -> {result['load_after']}",
                    flush=True,
                )
        for worker in workers:
            assert worker.process.stdin is not None
            worker.process.stdin.close()
    return {"phases": phases}


def report(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    phases = results["phases"]
    print(
        f"\nOutbox cost on the write path, {cores} cores: app.tasks.service"
        f".create_task, {args.writers} writers in {args.processes} process(es),"
        f" {args.seconds:g} s x {args.rounds} round(s) per mode"
        + (", real dispatcher draining" if args.with_dispatcher else "")
    )
    print(f"  code under test: {results['source']}")
    print(
        f"  {'mode':<48}{'tx/s':>9}{'rounds':>18}{'p50 ms':>8}{'p99 ms':>8}{'cost':>8}"
        "  load before (1-min)"
    )
    means = {
        mode: statistics.mean(p["tx_per_s"] for p in phases if p["mode"] == mode) for mode in MODES
    }
    base = means["no_outbox"]
    summary: dict[str, Any] = {}
    for mode, title in MODES.items():
        mine = [p for p in phases if p["mode"] == mode]
        per_round = " / ".join(f"{p['tx_per_s']:.0f}" for p in mine)
        p50 = statistics.median(p["latency_ms"]["p50"] for p in mine)
        p99 = max(p["latency_ms"]["p99"] for p in mine)
        cost = 100 * (1 - means[mode] / base)
        loads = ", ".join(
            f"{p['load_before'][0]:.2f}" + ("" if p["quiet"]["quiet"] else "!") for p in mine
        )
        cost_text = "" if mode == "no_outbox" else f"{cost:.1f}%"
        print(
            f"  {title:<48}{means[mode]:>9,.1f}{per_round:>18}{p50:>8.2f}{p99:>8.2f}"
            f"{cost_text:>8}  {loads}"
        )
        summary[mode] = {"tx_per_s": round(means[mode], 1), "cost_percent": round(cost, 2)}
    for mode in MODES:
        cpu = [p["cpu_percent_of_one_core"] for p in phases if p["mode"] == mode]
        mean_cpu = {k: round(statistics.mean(c[k] for c in cpu), 1) for k in cpu[0]}
        text = ", ".join(f"{k} {v:g}" for k, v in mean_cpu.items())
        print(f"    {mode} CPU in % of one core: {text} (machine: of {100 * cores})")
    if any(not p["quiet"]["quiet"] for p in phases):
        print("  ! = the 1-minute load was still above the threshold when that phase began")
    errors = sum(p["errors"] for p in phases)
    cost = summary["outbox"]["cost_percent"]
    ok = cost <= BUDGET_PERCENT and errors == 0
    print("Budget:")
    print(
        f"  outbox row + NOTIFY costs {cost:.1f}% of the mutation's throughput at"
        f" {args.writers} writers (budget <= {BUDGET_PERCENT:g}%)  {'PASS' if ok else 'FAIL'}"
    )
    notify_ratio = means["outbox"] / means["no_notify"]
    notify_ok = notify_ratio >= NOTIFY_RATIO_BUDGET and errors == 0
    print(
        f"  NOTIFY on / NOTIFY off = {notify_ratio:.2f} at {args.writers} writers"
        f" (budget >= {NOTIFY_RATIO_BUDGET:g} at 64)  {'PASS' if notify_ok else 'FAIL'}"
    )
    if errors:
        print(f"  {errors} transactions failed (see the worker logs): FAIL")
    writers = f"{args.writers} writers"
    results["rows"] = budget_rows(
        BudgetRow(
            what=f"write cost of the outbox row + NOTIFY, {writers}",
            measured=f"{means['outbox']:,.0f} tx/s, cost {cost:.1f}%",
            baseline=f"no outbox: {base:,.0f} tx/s",
            ratio=round(means["outbox"] / base, 3),
            budget=f"cost <= {BUDGET_PERCENT:g}%",
            passed=ok,
        ),
        BudgetRow(
            what=f"write path with NOTIFY on vs off, {writers}",
            measured=f"{means['outbox']:,.0f} tx/s",
            baseline=f"NOTIFY off: {means['no_notify']:,.0f} tx/s",
            ratio=round(notify_ratio, 3),
            budget=f">= {NOTIFY_RATIO_BUDGET:g} x",
            passed=notify_ok,
        ),
    )
    return summary | {"outbox_cost_ok": ok, "notify_ratio_ok": notify_ok, "errors": errors}


def main() -> int:
    args = parse_args()
    log_dir = fresh_log_dir(RESULTS_DIR / "write_overhead-logs")
    results = results_header(args) | {"load_average_start": load_average()}
    with migrated_database(args.database_url, "bench_write") as database_url:
        results |= measure(database_url, args, log_dir)
    results["load_average_end"] = load_average()
    results["budget"] = report(results, args)
    write_results(results, RESULTS_DIR / "write_overhead.json", log_dir)
    return 0 if results["budget"]["outbox_cost_ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(worker_main(sys.argv[2], sys.argv[3], sys.argv[4].split(",")))
        sys.exit(0)
    run_main(main)
