"""Commit -> Socket.IO client latency, beside its two bare baselines (README, Benchmarks).

    .venv/bin/python bench/commit_to_client.py [--events 2000] [--rate 1000] [--push both]

A: NOTIFY -> LISTEN between two psycopg connections. B: a bare Socket.IO server (uvicorn
subprocess) echoing a client in another process. The system: the real ``web`` and ``dispatcher``
processes; tasks POSTed over REST for a child whose Socket.IO client runs in another process
(bench/peers.py record), first one at a time (each POSTed once the last one's event has
arrived: the p50), then paced at --rate by --writers (the p99). It runs twice, with Web Push off
and configured (``--push``): configured means VAPID keys, the child's device subscribed to the
loopback push service (a process of its own: bench/peers.py push-service) and the child's app
reported hidden, so that every event also queues a push and the push sender sends it, as in a
deployment. Both runs are held to the same budget. All in a scratch database, dropped at the
end. Prints a table, writes bench/results/commit_to_client.json, and exits 1 if a budget is
missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from baselines import notify_round_trips, socketio_round_trips
from family_api import Recorder, sign_up_family, write_tasks
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
    migrated_database,
    results_header,
    run_main,
    start_child,
    summarize_ms,
    system_env,
    uvicorn_argv,
    write_results,
)
from psycopg.conninfo import conninfo_to_dict

from app.vapid_keys import generate_key_pair

WARMUP_EVENTS = 50
PUSH_MODES = ("off", "on")
VAPID_SUBJECT = "mailto:bench@family.test"
PHASE_ROWS = [  # (label, key in a phase's results)
    ("receipt - 201 response", "receipt_minus_response_ms"),
    ("receipt - occurredAt (ms-truncated)", "receipt_minus_occurred_at_ms"),
    ("created_at -> dispatcher marks delivered", "created_to_marked_delivered_ms"),
    ("marked delivered -> receipt", "marked_delivered_to_receipt_ms"),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events of the paced run")
    parser.add_argument("--rate", type=float, default=1000, help="target events/s, paced run")
    parser.add_argument("--writers", type=int, default=32, help="concurrent REST writers, paced")
    parser.add_argument(
        "--one-at-a-time",
        type=int,
        default=1000,
        help="events of the p50 run: each POSTed once the last one's event has arrived",
    )
    parser.add_argument("--samples", type=int, default=1000, help="samples of each baseline")
    parser.add_argument("--streams", type=int, default=1, help="children the tasks go to in turn")
    parser.add_argument("--settle", type=float, default=30, help="s to wait for stragglers")
    parser.add_argument(
        "--push",
        choices=[*PUSH_MODES, "both"],
        default="both",
        help="run with Web Push off, configured, or both (default)",
    )
    add_database_url_option(parser)
    parser.add_argument(
        "--dispatcher-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the dispatcher, for experiments (repeatable)",
    )
    return parser.parse_args()


def analyse(
    responded: dict[str, float],
    received: dict[str, tuple[float, dict[str, Any]]],
    outbox: dict[str, dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    """Latencies of one phase, matched by task id; the outbox's own timestamps split them."""
    after_201, after_occurred, to_marked, marked_to_receipt = [], [], [], []
    for task_id, responded_at in responded.items():
        if task_id not in received:
            continue
        received_at, envelope = received[task_id]
        after_201.append(received_at - responded_at)
        occurred_at = datetime.fromisoformat(envelope["occurredAt"]).timestamp()
        after_occurred.append(received_at - occurred_at)
        outbox_row = outbox[task_id]
        if outbox_row["delivered_at"] is not None:
            to_marked.append(outbox_row["delivered_at"] - outbox_row["created_at"])
            marked_to_receipt.append(received_at - outbox_row["delivered_at"])
    lost = sorted(set(responded) - set(received))
    return {
        "events": len(responded),
        "lost": len(lost),
        "lost_outbox_rows": [outbox.get(task_id) for task_id in lost[:20]],
        "achieved_events_per_s": round(len(responded) / elapsed, 1),
        "receipt_minus_response_ms": summarize_ms(after_201),
        "receipt_minus_occurred_at_ms": summarize_ms(after_occurred),
        "created_to_marked_delivered_ms": summarize_ms(to_marked),
        "marked_delivered_to_receipt_ms": summarize_ms(marked_to_receipt),
    }


async def outbox_rows(database_url: str) -> dict[str, dict[str, Any]]:
    """Each task event's outbox row by task id: created_at is stamped in the writer's
    transaction, delivered_at in the dispatcher's (both as Unix time)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT payload->>'taskId', id, status, attempts, last_error,"
            " extract(epoch FROM created_at)::float8, extract(epoch FROM delivered_at)::float8"
            " FROM outbox_events WHERE payload ? 'taskId'"
        )
        columns = ["id", "status", "attempts", "last_error", "created_at", "delivered_at"]
        return {row[0]: dict(zip(columns, row[1:], strict=True)) for row in await cur.fetchall()}


def start_push_service(database_url: str, args: argparse.Namespace, log_dir: Path) -> PushSetup:
    """The loopback push service, and the settings that send the system's pushes to it."""
    private_key, public_key = generate_key_pair()
    argv = [sys.executable, "bench/peers.py", "push-service", public_key, str(log_dir)]
    child = start_child(
        "push-service",
        [*argv, str(args.streams)],
        system_env(database_url),
        log_dir,
        pipes=True,
    )
    assert child.process.stdout is not None
    line = child.process.stdout.readline()
    if not line:
        raise RuntimeError(f"the push service did not start:\n{child.log_tail()}")
    started = json.loads(line)
    env = {
        "APP_VAPID_PRIVATE_KEY": private_key,
        "APP_VAPID_SUBJECT": VAPID_SUBJECT,
        # The loopback push service (the default list has real push services only).
        "APP_PUSH_ENDPOINT_ALLOWLIST": json.dumps(["127.0.0.1"]),
        "DISPATCHER_PUSH_CA_FILE": started["caFile"],
    }
    return PushSetup(child, env, started["subscriptions"])


@dataclass
class PushSetup:
    """Web Push configured: the push service's process, the system's settings for it, and a
    browser subscription for each child."""

    service: Child
    env: dict[str, str]
    subscriptions: list[dict[str, Any]]

    def stop(self) -> dict[str, int]:
        """Stop the push service; return how many pushes it received and refused."""
        counts: dict[str, int] = json.loads(self.service.process.communicate("", 30)[0])
        return counts


def measure_system(
    database_url: str, args: argparse.Namespace, log_dir: Path, *, push: bool
) -> dict[str, Any]:
    """Run the real web + dispatcher; time REST-created tasks to the assignee's socket."""
    env = system_env(database_url)
    port = free_port()
    mode = "push-on" if push else "push-off"
    with ExitStack() as stack:
        setup = start_push_service(database_url, args, log_dir) if push else None
        if setup is not None:
            stack.callback(setup.service.stop)
            env |= setup.env
        argv = uvicorn_argv("app.main:create_app", port, "--factory")
        web = start_child("web", argv, env, log_dir, log_name=f"web-{mode}.log")
        stack.callback(web.stop)
        extra = dict(pair.split("=", 1) for pair in args.dispatcher_env)
        argv = [sys.executable, "-m", "dispatcher"]
        log_name = f"dispatcher-{mode}.log"
        dispatcher = start_child("dispatcher", argv, env | extra, log_dir, log_name=log_name)
        stack.callback(dispatcher.stop)
        web.wait_for_http(f"http://127.0.0.1:{port}/healthz")
        dispatcher.wait_for_log("dispatcher worker started")
        children = {"web": web, "dispatcher": dispatcher}
        subscriptions = setup.subscriptions if setup is not None else None
        results = asyncio.run(
            drive_system(database_url, port, args, log_dir, children, subscriptions)
        )
        if setup is not None:
            # Let the push sender finish, so the push service's counts are the whole run's.
            pushes = results["one_at_a_time"]["events"] + results["paced"]["events"] + WARMUP_EVENTS
            results["pushes"] = asyncio.run(wait_for_pushes(database_url, pushes, args.settle))
            results["pushes"] |= setup.stop()
        return results


async def wait_for_pushes(database_url: str, expected: int, within: float) -> dict[str, int]:
    """Wait until ``expected`` pushes are sent (or ``within`` s pass); the queue's counts."""
    query = "SELECT status, count(*) FROM push_deliveries GROUP BY status"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            cur = await conn.execute(query)
            counts = {status: count for status, count in await cur.fetchall()}
            done = counts.get("sent", 0) >= expected
            if done or asyncio.get_running_loop().time() > deadline:
                return {"queued": sum(counts.values()), "sent": counts.get("sent", 0)}
            await asyncio.sleep(0.2)


async def drive_system(
    database_url: str,
    port: int,
    args: argparse.Namespace,
    log_dir: Path,
    children: dict[str, Child],
    subscriptions: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Sign up a family, watch the child's socket from another process, write the phases.

    With ``subscriptions`` (Web Push configured), each child subscribes a device and its socket
    reports the app hidden, so each event also queues a push."""
    # The p50 run posts each task once the last one's event has arrived, as the baselines time
    # one message at a time on idle processes: a writer posting back to back would time each
    # event behind the web process's CPU for the next request (the paced run's p99 covers load).
    plan = [
        ("warm-up", WARMUP_EVENTS, None, 1, False),
        ("one_at_a_time", args.one_at_a_time, None, 1, True),
        ("paced", args.events, args.rate, args.writers, False),
    ]
    web_url = f"http://127.0.0.1:{port}"
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    limits = httpx.Limits(max_connections=args.writers)
    async with httpx.AsyncClient(base_url=web_url, timeout=60, limits=limits) as api:
        parent, kids = await sign_up_family(api, args.streams)
        for kid, subscription in zip(kids, subscriptions or [], strict=False):
            subscribed = await api.post(
                "/v1/push/subscriptions", headers=kid.headers, json=subscription
            )
            subscribed.raise_for_status()
        tokens = ",".join(kid.token for kid in kids)
        argv = [sys.executable, "bench/peers.py", "record", web_url, tokens]
        if subscriptions is not None:
            argv.append("hidden")
        peer = start_child("recorder", argv, system_env(database_url), log_dir, pipes=True)
        children = children | {"recorder": peer}
        recorder = Recorder(peer)
        runs = []
        try:
            await asyncio.to_thread(recorder.wait_ready)

            async def until_received(task_id: str) -> None:
                await asyncio.to_thread(recorder.wait_for_tasks, [task_id], args.settle)

            for name, count, rate, writers, one_at_a_time in plan:
                before = cpu_snapshot(children, dbname)
                responded, elapsed = await write_tasks(
                    api,
                    parent,
                    kids,
                    count=count,
                    rate=rate,
                    writers=writers,
                    after_each=until_received if one_at_a_time else None,
                )
                await asyncio.to_thread(recorder.wait_for_tasks, responded, args.settle)
                cpu = cpu_percent(before, cpu_snapshot(children, dbname))
                runs.append((name, responded, elapsed, cpu))
        finally:
            peer.stop()  # also unblocks a thread still reading its pipe after a Ctrl-C
    outbox = await outbox_rows(database_url)
    return recorder.delivery_faults() | {
        name: analyse(responded, recorder.first_by_task, outbox, elapsed) | {"cpu_percent": cpu}
        for name, responded, elapsed, cpu in runs
        if name != "warm-up"
    }


def table_row(label: str, stats: dict[str, Any]) -> str:
    numbers = "".join(f"{stats.get(k, float('nan')):8.2f}" for k in ("p50", "p90", "p99", "max"))
    return f"  {label:<46}{stats.get('n', 0):6d}{numbers}"


def report(results: dict[str, Any], rate: float) -> dict[str, Any]:
    """Print the table and the budget checks (docs/design.md); return the verdicts, each
    budget once per push mode run (``push_off_...``, ``push_on_...``)."""
    cores = os.cpu_count() or 1
    print(f"\nCommit -> Socket.IO client, {cores} cores; load average (1/5/15m):")
    print("  " + ", ".join(f"{k} {v}" for k, v in results["load_average"].items()))
    print(f"  code under test: {results['source']}")
    print(f"  {'latency, ms':<46}{'n':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    a, b = results["baseline_a_notify_listen_ms"], results["baseline_b_socketio_round_trip_ms"]
    print(table_row("A  bare NOTIFY -> LISTEN", a))
    print(table_row("B  bare Socket.IO emit -> client round trip", b))
    floor = a["p50"] + b["p50"]
    limit = 5 * floor
    verdicts: dict[str, Any] = {"p50_limit_ms": round(limit, 3), "target_rate": rate}
    rows: list[BudgetRow] = []
    for mode in PUSH_MODES:
        system = results.get(f"push_{mode}")
        if system is not None:
            verdicts |= report_system(system, mode, limit, rate, results["args"]["streams"])
            rows += budget_rows_of(system, mode, floor, rate, verdicts)
    results["rows"] = budget_rows(*rows)
    return verdicts


def budget_rows_of(
    system: dict[str, Any], mode: str, floor: float, rate: float, verdicts: dict[str, Any]
) -> list[BudgetRow]:
    """The two budgets of one Web Push mode, for docs/benchmarks.md."""
    p50 = system["one_at_a_time"]["receipt_minus_response_ms"]["p50"]
    paced = system["paced"]
    return [
        BudgetRow(
            what=f"commit → client p50, Web Push {mode}",
            measured=f"{p50:.2f} ms",
            baseline=f"floor {floor:.2f} ms (bare NOTIFY → LISTEN + Socket.IO round trip)",
            ratio=round(p50 / floor, 2),
            budget="≤ 5 x floor",
            passed=verdicts[f"push_{mode}_p50_within_5x_baselines"],
        ),
        BudgetRow(
            what=f"commit → client p99 at {rate:g} events/s, Web Push {mode}",
            measured=f"{paced['receipt_minus_response_ms']['p99']:.2f} ms"
            f" ({paced['achieved_events_per_s']} events/s reached)",
            baseline="",
            ratio=None,
            budget="≤ 20 ms, nothing lost",
            passed=verdicts[f"push_{mode}_p99_le_20ms_at_rate"],
        ),
    ]


def report_system(
    system: dict[str, Any], mode: str, limit: float, rate: float, streams: int
) -> dict[str, bool]:
    """Print one run of the system (Web Push ``mode``) and its budget checks."""
    cores = os.cpu_count() or 1
    single, paced = system["one_at_a_time"], system["paced"]
    print(f"  Web Push {mode}:" + (f" {system['pushes']}" if "pushes" in system else ""))
    for title, run in (("one at a time", single), (f"paced at {rate:g}/s", paced)):
        title = f"{title}, {streams} stream(s)"
        print(
            f"  system, {title}: {run['events']} events, {run['achieved_events_per_s']} events/s"
            f" achieved, lost {run['lost']}"
        )
        for label, key in PHASE_ROWS:
            print(table_row(f"  {label}", run[key]))
        cpu = ", ".join(f"{k} {v:g}" for k, v in run["cpu_percent"].items())
        print(f"    CPU in % of one core: {cpu} (machine: of {100 * cores})")
    p50, p99 = single["receipt_minus_response_ms"]["p50"], paced["receipt_minus_response_ms"]["p99"]
    rate_met = paced["achieved_events_per_s"] >= 0.95 * rate
    no_loss = single["lost"] == paced["lost"] == 0
    faults = f"duplicates {system['duplicates']}, out of order {system['out_of_order']}"
    verdicts = {
        "p50_within_5x_baselines": p50 <= limit and no_loss,
        "p99_le_20ms_at_rate": p99 <= 20 and rate_met and no_loss,
    }
    passed = {k: "PASS" if v else "FAIL" for k, v in verdicts.items()}
    short = "" if rate_met else f" (only {paced['achieved_events_per_s']} events/s reached)"
    print(f"Budget with Web Push {mode}, on receipt - 201 response:")
    verdict = passed["p50_within_5x_baselines"]
    print(f"  p50 within 5 x (A_p50 + B_p50): {p50:.2f} ms vs {limit:.2f} ms  {verdict}")
    print(
        f"  p99 <= 20 ms at {rate:g} events/s: {p99:.2f} ms{short}  {passed['p99_le_20ms_at_rate']}"
    )
    print(f"  no committed event lost: {'PASS' if no_loss else 'FAIL'} ({faults})")
    return {f"push_{mode}_{name}": verdict for name, verdict in verdicts.items()}


def main() -> int:
    args = parse_args()
    log_dir = fresh_log_dir(RESULTS_DIR / "commit_to_client-logs")
    results = results_header(args)
    load = {"start": os.getloadavg()}
    with migrated_database(args.database_url, "bench_c2c") as database_url:
        print("baseline A: NOTIFY -> LISTEN ...", flush=True)
        a = asyncio.run(notify_round_trips(database_url, args.samples))
        results["baseline_a_notify_listen_ms"] = summarize_ms(a)
        print("baseline B: Socket.IO round trip ...", flush=True)
        b = socketio_round_trips(args.samples, log_dir)
        results["baseline_b_socketio_round_trip_ms"] = summarize_ms(b)
        modes = PUSH_MODES if args.push == "both" else (args.push,)
        for mode in modes:
            load[f"before system, push {mode}"] = os.getloadavg()
            print(f"system, Web Push {mode}: REST commit -> Socket.IO client ...", flush=True)
            push = mode == "on"
            results[f"push_{mode}"] = measure_system(database_url, args, log_dir, push=push)
    load["end"] = os.getloadavg()
    results["load_average"] = {k: [round(x, 2) for x in v] for k, v in load.items()}
    results["budget"] = report(results, args.rate)
    write_results(results, RESULTS_DIR / "commit_to_client.json", log_dir)
    met = all(v for k, v in results["budget"].items() if k.startswith("push_"))
    return 0 if met else 1


if __name__ == "__main__":
    run_main(main)
