"""REST task creation throughput: the real web process beside a bare Starlette + psycopg handler.

    .venv/bin/python bench/rest_throughput.py [--clients 16] [--drivers 1] [--seconds 15]
        [--rounds 2] [--profile PATH]

Two servers on a scratch migrated database, each uvicorn with the Procfile's options
(``harness.uvicorn_argv``): the real web process (``app.main:create_app``), and the bare
baseline (``bench/bare_rest.py``: Starlette, an async psycopg pool and exactly the SQL the real
request runs, in one transaction, answering the same JSON). ``--families`` families are made
through the app's services (``family_api.create_families``: a parent and a child each). Then
``--clients`` concurrent httpx clients, split over ``--drivers`` driver processes of their own
(so the load generator's CPU is measured, not guessed), POST task creations back to back (``POST
/v1/families/{id}/tasks`` with a title and the child as assignee, as ``family_api.write_tasks``
does), client i as the parent of family i mod ``--families``, for ``--seconds`` after a
``--warmup``. The two servers take turns, ABBA over ``--rounds`` rounds; before each phase the
written tables are emptied, vacuumed and checkpointed, and the machine is let settle
(``harness.wait_for_quiet``). Nothing drains the outbox (no dispatcher: the NOTIFYs go unheard,
as the write path does not wait).

Reports requests/s (201s answered inside the window), p50/p99 latency, CPU by process, and
the server's CPU milliseconds per request (the figure other load on the machine disturbs
least: with the cores saturated, requests/s follows each server's share of them). The budget
row is the real server's mean requests/s over the bare one's (docs/design.md: >= 0.5 x).
``--profile PATH`` then runs one more phase of the real web process, not counted, recorded
with py-spy (collapsed stacks, ``-f raw``: see docs/profiles.md). Prints a table, writes
bench/results/rest_throughput.json, exits 1 if the budget is missed or a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
from family_api import Member, create_families
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
    summarize_ms,
    system_env,
    uvicorn_argv,
    wait_for_quiet,
    with_other_processes,
    write_results,
)
from psycopg.conninfo import conninfo_to_dict

SERVERS = {
    "bare": "bare Starlette + psycopg, same SQL  [baseline]",
    "app": "the real web process (app.main)",
}
BUDGET_RATIO = 0.5
WRITTEN_TABLES = "tasks, task_assignees, outbox_events, outbox_recipients, stream_sequences"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in all")
    parser.add_argument("--drivers", type=int, default=1, help="driver processes they share")
    parser.add_argument("--families", type=int, default=16, help="families signed up")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds first")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the two servers")
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy the real web process in an extra phase, to PATH",
    )
    add_database_url_option(parser)
    args = parser.parse_args()
    if args.clients % args.drivers:
        parser.error("--clients must be a multiple of --drivers")
    return args


# --- the driver process (``rest_throughput.py --driver``) --------------------------------------


async def driver_main() -> None:
    """Read the members (one JSON line), then answer each stdin line ``URL START_AT WARMUP
    SECONDS`` with one JSON line: the latencies of the 201s answered inside the window and the
    failures."""
    loop = asyncio.get_running_loop()
    clients = [
        (Member(**parent), kids) for parent, kids in json.loads(sys.stdin.readline())["clients"]
    ]
    print("ready", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        url, start_at, warmup, seconds = line.split()
        window_start = float(start_at) + float(warmup)
        window = (window_start, window_start + float(seconds))
        limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as api:
            await asyncio.sleep(max(0.0, float(start_at) - time.time()))
            results = await asyncio.gather(
                *(post_tasks(api, parent, kids, window) for parent, kids in clients)
            )
        latencies = [took for mine, _, _ in results for took in mine]
        print(
            json.dumps(
                {
                    "latencies": latencies,
                    "errors": sum(errors for _, errors, _ in results),
                    "first_error": next((e for _, _, e in results if e), None),
                }
            ),
            flush=True,
        )


async def post_tasks(
    api: httpx.AsyncClient, parent: Member, kids: list[str], window: tuple[float, float]
) -> tuple[list[float], int, str | None]:
    """One client: create tasks back to back until the window ends; the latencies of those
    answered inside it, the failures, and the first failure's text."""
    path = f"/v1/families/{parent.family_id}/tasks"
    latencies: list[float] = []
    errors, first_error = 0, None
    for index in itertools.count():
        if time.time() >= window[1]:
            break
        body = {"title": f"Bench task {index}", "assignedTo": [kids[index % len(kids)]]}
        began = time.perf_counter()
        try:
            response = await api.post(path, headers=parent.headers, json=body)
            failure = None if response.status_code == 201 else f"{response.status_code}"
            if failure:
                failure += f" {response.text[:300]}"
        except httpx.HTTPError as exc:
            failure = repr(exc)
        took = time.perf_counter() - began
        if failure:
            errors += 1
            first_error = first_error or failure
        elif window[0] <= time.time() < window[1]:
            latencies.append(took)
    return latencies, errors, first_error


# --- the bench ---------------------------------------------------------------------------------


def reset(database_url: str) -> None:
    """Empty what the requests write, so every phase starts from the same tables."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {WRITTEN_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


def sessions_started(database_url: str) -> int:
    """Connections made to the scratch database so far (``pg_stat_database.sessions``): a pool
    that closes and reopens connections under load shows here."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def start_profile(web: Child, args: argparse.Namespace, log_dir: Path) -> Child:
    """py-spy recording the web process for the measured window (collapsed stacks)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    argv = [str(py_spy), "record", "-p", str(web.process.pid), "-d", f"{args.seconds:g}"]
    argv += ["-r", "100", "-f", "raw", "-o", str(args.profile.resolve()), "--nonblocking"]
    return start_child("py-spy", argv, {}, log_dir)


def run_phase(
    database_url: str,
    server: str,
    url: str,
    drivers: list[Child],
    servers: dict[str, Child],
    args: argparse.Namespace,
    dbname: str,
    log_dir: Path,
    *,
    profile: bool = False,
) -> dict[str, Any]:
    start_at = time.time() + 0.5
    for driver in drivers:
        assert driver.process.stdin is not None
        driver.process.stdin.write(f"{url} {start_at} {args.warmup} {args.seconds}\n")
        driver.process.stdin.flush()
    children = {d.name: d for d in drivers} | {"server": servers[server]}
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    spy = start_profile(servers[server], args, log_dir) if profile else None
    before = cpu_snapshot_with_server(children, dbname)
    sessions_before = sessions_started(database_url)
    time.sleep(max(0.0, start_at + args.warmup + args.seconds - time.time()))
    after = cpu_snapshot_with_server(children, dbname)
    sessions = sessions_started(database_url) - sessions_before - 1  # less our own
    latencies: list[float] = []
    errors, first_error = 0, None
    for driver in drivers:
        assert driver.process.stdout is not None
        line = driver.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{driver.name} failed:\n{driver.log_tail()}")
        result = json.loads(line)
        latencies += result["latencies"]
        errors += result["errors"]
        first_error = first_error or result["first_error"]
    if spy is not None:
        spy.process.wait(args.seconds + 30)
        print(f"  profile of the web process: {args.profile}", flush=True)
    cpu = cpu_percent(before, after)
    cpu["client_drivers"] = round(sum(cpu.pop(d.name) for d in drivers), 1)
    # The server's CPU per answered request: what the machine's other load disturbs least.
    per_request = 10 * cpu["server"] / (len(latencies) / args.seconds) if latencies else None
    return {
        "requests": len(latencies),
        "server_cpu_ms_per_request": None if per_request is None else round(per_request, 3),
        "errors": errors,
        "first_error": first_error,
        "requests_per_s": round(len(latencies) / args.seconds, 1),
        "connections_opened": sessions,
        "latency_ms": summarize_ms(latencies),
        "cpu_percent_of_one_core": with_other_processes(cpu),
    }


def measure(database_url: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    env = system_env(database_url)
    dbname = str(conninfo_to_dict(database_url)["dbname"])
    phases: list[dict[str, Any]] = []
    with ExitStack() as stack:
        servers: dict[str, Child] = {}
        urls: dict[str, str] = {}
        for server, (app, extra) in {
            "app": ("app.main:create_app", ("--factory",)),
            "bare": ("bare_rest:app", ("--app-dir", "bench")),
        }.items():
            port = free_port()
            child = start_child(server, uvicorn_argv(app, port, *extra), env, log_dir)
            stack.callback(child.stop)
            urls[server] = f"http://127.0.0.1:{port}"
            child.wait_for_http(f"{urls[server]}/healthz")
            servers[server] = child
        families = asyncio.run(create_families(database_url, args.families, 2))
        members = [(parent, [kid.id for kid in kids]) for parent, *kids in families]
        per_driver = args.clients // args.drivers
        drivers = []
        for index in range(args.drivers):
            mine = [members[(index * per_driver + i) % len(members)] for i in range(per_driver)]
            argv = [sys.executable, __file__, "--driver"]
            driver = start_child(f"driver{index}", argv, env, log_dir, pipes=True)
            stack.callback(driver.stop)
            assert driver.process.stdin is not None
            assert driver.process.stdout is not None
            clients = [(vars(parent), kids) for parent, kids in mine]
            driver.process.stdin.write(json.dumps({"clients": clients}) + "\n")
            driver.process.stdin.flush()
            if driver.process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{driver.name} did not start:\n{driver.log_tail()}")
            drivers.append(driver)
        order = list(SERVERS)
        for round_index in range(args.rounds):
            # AB, BA, ...: a drift in the machine's speed hits both servers alike.
            for server in order if round_index % 2 == 0 else order[::-1]:
                reset(database_url)
                label = f"{server}, round {round_index + 1}"
                print(f"{label} ...", flush=True)
                quiet = wait_for_quiet(label=label)
                load_before = load_average()
                result = run_phase(
                    database_url, server, urls[server], drivers, servers, args, dbname, log_dir
                )
                result |= {
                    "server": server,
                    "round": round_index + 1,
                    "quiet": quiet,
                    "load_before": load_before,
                    "load_after": load_average(),
                }
                phases.append(result)
                latency = result["latency_ms"]
                print(
                    f"  {result['requests_per_s']:>8,.1f} req/s  p50 {latency.get('p50')} ms"
                    f"  p99 {latency.get('p99')} ms  errors {result['errors']}"
                    f"  connections opened {result['connections_opened']}"
                    f"  load {load_before} -> {result['load_after']}",
                    flush=True,
                )
                if result["first_error"]:
                    print(f"  first error: {result['first_error']}", flush=True)
        profiled = None
        if args.profile is not None:
            # py-spy takes CPU from the machine's two cores: its phase is not one of the above.
            reset(database_url)
            print("app, profiled with py-spy (not counted) ...", flush=True)
            wait_for_quiet(label="the profiled phase")
            profiled = run_phase(
                database_url,
                "app",
                urls["app"],
                drivers,
                servers,
                args,
                dbname,
                log_dir,
                profile=True,
            )
            print(f"  {profiled['requests_per_s']:>8,.1f} req/s while profiled", flush=True)
        for driver in drivers:
            assert driver.process.stdin is not None
            driver.process.stdin.close()
    return {"phases": phases, "profiled_phase": profiled}


def report(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    phases = results["phases"]
    print(
        f"\nREST task creation, {args.clients} clients in {args.drivers} driver process(es),"
        f" {args.families} families, {args.seconds:g} s x {args.rounds} round(s) per server"
    )
    print(f"  code under test: {results['source']}")
    print(
        f"  {'server':<46}{'req/s':>9}{'rounds':>14}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU ms/req':>12}  load before"
    )
    means = {
        s: statistics.mean(p["requests_per_s"] for p in phases if p["server"] == s) for s in SERVERS
    }
    summary: dict[str, Any] = {}
    for server, title in SERVERS.items():
        mine = [p for p in phases if p["server"] == server]
        per_round = " / ".join(f"{p['requests_per_s']:.0f}" for p in mine)
        p50 = statistics.median(p["latency_ms"]["p50"] for p in mine)
        p99 = max(p["latency_ms"]["p99"] for p in mine)
        loads = ", ".join(
            f"{p['load_before'][0]:.2f}" + ("" if p["quiet"]["quiet"] else "!") for p in mine
        )
        cpu_ms = statistics.mean(p["server_cpu_ms_per_request"] or 0 for p in mine)
        print(
            f"  {title:<46}{means[server]:>9,.1f}{per_round:>14}{p50:>9.2f}{p99:>9.2f}"
            f"{cpu_ms:>12.2f}  {loads}"
        )
        summary[server] = {
            "requests_per_s": round(means[server], 1),
            "p50_ms": p50,
            "p99_ms": p99,
            "server_cpu_ms_per_request": round(cpu_ms, 3),
        }
    for server in SERVERS:
        cpu = [p["cpu_percent_of_one_core"] for p in phases if p["server"] == server]
        mean_cpu = {k: round(statistics.mean(c[k] for c in cpu), 1) for k in cpu[0]}
        text = ", ".join(f"{k} {v:g}" for k, v in mean_cpu.items())
        print(f"    {server} CPU in % of one core: {text}")
        summary[server]["cpu_percent_of_one_core"] = mean_cpu
    if any(not p["quiet"]["quiet"] for p in phases):
        print("  ! = the machine was still busy when that phase began")
    errors = sum(p["errors"] for p in phases)
    ratio = means["app"] / means["bare"] if means["bare"] else 0.0
    ok = ratio >= BUDGET_RATIO and errors == 0
    print("Budget:")
    print(
        f"  real / bare = {ratio:.2f} ({means['app']:,.0f} / {means['bare']:,.0f} req/s)"
        f" (budget >= {BUDGET_RATIO:g})  {'PASS' if ok else 'FAIL'}"
    )
    if errors:
        print(f"  {errors} requests failed (see the phases' first errors): FAIL")
    results["rows"] = budget_rows(
        BudgetRow(
            what="REST task creation vs a bare Starlette + psycopg handler, same SQL,"
            f" {args.clients} clients",
            measured=f"{means['app']:,.0f} req/s, p50 {summary['app']['p50_ms']:.1f} ms",
            baseline=f"bare: {means['bare']:,.0f} req/s, p50 {summary['bare']['p50_ms']:.1f} ms",
            ratio=round(ratio, 3),
            budget=f">= {BUDGET_RATIO:g} x",
            passed=ok,
        )
    )
    return summary | {"ratio": round(ratio, 3), "ok": ok, "errors": errors}


def main() -> int:
    args = parse_args()
    log_dir = fresh_log_dir(RESULTS_DIR / "rest_throughput-logs")
    results = results_header(args) | {"load_average_start": load_average()}
    with migrated_database(args.database_url, "bench_rest") as database_url:
        results |= measure(database_url, args, log_dir)
    results["load_average_end"] = load_average()
    results["budget"] = report(results, args)
    write_results(results, RESULTS_DIR / "rest_throughput.json", log_dir)
    return 0 if results["budget"]["ok"] else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--driver"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(driver_main())
        sys.exit(0)
    run_main(main)
