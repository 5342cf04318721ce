"""Web-process memory per idle authenticated WebSocket connection.

    .venv/bin/python bench/idle_connections.py [--connections 10000] [--clients 4] [--hold 30]

One web process (``uvicorn app.main:create_app`` with the Procfile's options) on a scratch
database with ``--connections`` users (families of four). ``--clients`` client processes open
one WebSocket each per user (``/socket.io/?EIO=4&transport=websocket``) with the raw client of
bench/many_sockets.py (the ``websockets`` package speaking the Engine.IO 4 / Socket.IO 5
handshake itself): it sends the CONNECT packet with ``auth: {token}``, needs the server's
CONNECT answer (a refusal counts as a failure), and answers the server's pings.
The web process's RSS (VmRSS) is read after a warm-up (a few hundred connections opened and
closed, so pools and lazy imports are in place) and once all are connected and have stayed idle
for ``--hold`` seconds; the clients then report how many are still open, and so does the
server (``presence_sockets``).

Baseline, same run: a bare python-socketio ``AsyncServer`` on uvicorn with the same options
(bench/peers.py ``bare_app``: no auth, no rooms, no client manager), with the same clients.

The client offers permessage-deflate as browsers do (``--compression none`` for a client that
does not; the server's options decide whether it is used). Prints a table, writes
bench/results/idle_connections.json, exits 1 if the budget is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
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
    free_port,
    fresh_log_dir,
    load_average,
    migrated_database,
    raise_fd_limit,
    results_header,
    rss_kib,
    run_main,
    start_child,
    system_env,
    uvicorn_argv,
    wait_for_quiet,
    write_results,
)
from many_sockets import issue_tokens, open_sockets, seed_users

BUDGET_KIB = 30
WARMUP_CONNECTIONS = 300


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000, help="idle sockets to hold")
    parser.add_argument("--clients", type=int, default=4, help="client processes they split over")
    parser.add_argument("--hold", type=float, default=30, help="seconds they must stay connected")
    parser.add_argument(
        "--concurrency", type=int, default=25, help="handshakes in flight per client process"
    )
    parser.add_argument(
        "--compression",
        default="deflate",
        help="client offers: 'deflate' (as browsers do), 'none', or both, comma-separated",
    )
    parser.add_argument(
        "--uvicorn-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra uvicorn argument for both servers, e.g. --uvicorn-arg=--ws=wsproto",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="only the real web process")
    add_database_url_option(parser)
    return parser.parse_args()


def presence_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM presence_sockets").fetchone()
    return int(row[0]) if row else 0


def measure_server(
    name: str,
    server: Child,
    url: str,
    tokens: list[str],
    args: argparse.Namespace,
    compression: str,
    source_net: int,
    database_url: str | None,
    scratch: Path,
    log_dir: Path,
) -> dict[str, Any]:
    """Warm the server up, read its RSS, hold ``tokens`` idle sockets, read it again."""
    options = {"processes": args.clients, "concurrency": args.concurrency}
    options |= {"compression": compression, "scratch": scratch, "log_dir": log_dir}
    warm = open_sockets(
        f"{name}-warmup", url, tokens[:WARMUP_CONNECTIONS], source_net=source_net, **options
    )
    try:
        warmed = warm.read_all()
    finally:
        warm.stop()
    if sum(a["connected"] for a in warmed) < min(WARMUP_CONNECTIONS, len(tokens)):
        raise RuntimeError(f"{name}: warm-up connections failed: {warmed}")
    time.sleep(3)  # the server notices the closed warm-up sockets and forgets them
    quiet = wait_for_quiet(label=name)
    load_before = load_average()
    rss_before = rss_kib(server.process.pid)
    clients = open_sockets(name, url, tokens, source_net=source_net + 1, **options)
    try:
        opened = clients.read_all()
        connected = sum(a["connected"] for a in opened)
        deflate = sum(a["deflate"] for a in opened)
        connect_seconds = max(a["seconds"] for a in opened)
        rss_connected = rss_kib(server.process.pid)
        print(
            f"  {connected}/{len(tokens)} connected in {connect_seconds:.1f} s;"
            f" holding {args.hold:g} s ...",
            flush=True,
        )
        server.check_alive()
        time.sleep(args.hold)
        server.check_alive()
        rss_after = rss_kib(server.process.pid)
        reports = clients.ask()
        still_open = sum(r["open"] for r in reports)
        server_side = presence_count(database_url) if database_url else None
    finally:
        clients.stop()
    failures = [f for r in reports for f in r["failures"]]
    per_connection = (rss_after - rss_before) / connected if connected else None
    return {
        "connections": len(tokens),
        "connected": connected,
        "deflate_negotiated": deflate,
        "failed": sum(r["failed"] for r in reports),
        "failure_examples": failures[:5],
        "open_after_hold": still_open,
        "server_side_sockets_after_hold": server_side,
        "connect_seconds": round(connect_seconds, 1),
        "rss_kib_before": rss_before,
        "rss_kib_connected": rss_connected,
        "rss_kib_after_hold": rss_after,
        "kib_per_connection": round(per_connection, 2) if per_connection else None,
        "quiet": quiet,
        "load_before": load_before,
        "load_after": load_average(),
    }


def measure(database_url: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    env = system_env(database_url)
    users = seed_users(database_url, args.connections)
    tokens = issue_tokens(database_url, users)
    results: dict[str, Any] = {}
    source_net = 10
    with tempfile.TemporaryDirectory() as scratch:
        for compression in args.compression.split(","):
            # Both servers get the Procfile's uvicorn options (uvicorn_argv), WebSocket ones too.
            servers = [("system", "app.main:create_app", ["--factory"], env)]
            if not args.skip_baseline:
                servers.insert(0, ("bare", "peers:bare_app", ["--app-dir", "bench"], os.environ))
            for kind, app, extra, server_env in servers:
                name = f"{kind}-{compression}"
                print(f"{name}: {args.connections} idle sockets ...", flush=True)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                with ExitStack() as stack:
                    argv = uvicorn_argv(app, port, *extra, *args.uvicorn_arg)
                    server = start_child(name, argv, server_env, log_dir)
                    stack.callback(server.stop)
                    probe = f"{url}/socket.io/?EIO=4&transport=polling"
                    server.wait_for_http(probe if kind == "bare" else f"{url}/healthz")
                    result = measure_server(
                        name,
                        server,
                        url,
                        tokens,
                        args,
                        compression,
                        source_net,
                        database_url if kind == "system" else None,
                        Path(scratch),
                        log_dir,
                    )
                    results[name] = result
                    source_net += 2
                    print(
                        f"  {result['kib_per_connection']} KiB per connection"
                        f" ({result['rss_kib_before'] / 1024:.0f} MiB ->"
                        f" {result['rss_kib_after_hold'] / 1024:.0f} MiB);"
                        f" {result['open_after_hold']} open after {args.hold:g} s;"
                        f" load {result['load_before']} -> {result['load_after']}",
                        flush=True,
                    )
                if kind == "system":
                    with psycopg.connect(database_url, autocommit=True) as conn:
                        conn.execute("DELETE FROM presence_sockets")
                        conn.execute("DELETE FROM realtime_nodes")
    return results


def report(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    phases = results["phases"]
    print(
        f"\nWeb-process memory per idle authenticated WebSocket:"
        f" {args.connections:,} sockets from {args.clients} client processes, held {args.hold:g} s"
    )
    print(f"  code under test: {results['source']}")
    print(
        f"  {'server-client offer':<26}{'deflate':>10}{'connected':>10}{'open':>7}"
        f"{'RSS MiB':>16}"
        f"{'KiB/conn':>10}{'connect s':>10}  load before/after"
    )
    for name, r in phases.items():
        rss = f"{r['rss_kib_before'] / 1024:.0f} -> {r['rss_kib_after_hold'] / 1024:.0f}"
        per = r["kib_per_connection"]
        flag = "" if r["quiet"]["quiet"] else "  (machine not quiet)"
        print(
            f"  {name:<26}{r['deflate_negotiated']:>10}{r['connected']:>10}"
            f"{r['open_after_hold']:>7}{rss:>16}"
            f"{per if per is not None else float('nan'):>10.2f}{r['connect_seconds']:>10.1f}"
            f"  {r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}{flag}"
        )
        if r["failure_examples"]:
            print(f"    failures ({r['failed']}), e.g.: {r['failure_examples'][0]}")
    verdicts: dict[str, Any] = {}
    print("Budget: <= 30 KB per idle authenticated socket, 10,000 on one process")
    print("  (30 KB read as 30 KiB = 30,720 bytes, the lenient reading; RSS growth / sockets)")
    judged = [n for n in ("system-deflate", "system-none") if n in phases]
    for name in judged:
        r = phases[name]
        all_held = r["connected"] == r["open_after_hold"] == args.connections
        server_ok = r["server_side_sockets_after_hold"] == args.connections
        per = r["kib_per_connection"]
        at_scale = args.connections >= 10_000
        ok = per is not None and per <= BUDGET_KIB and all_held and server_ok and at_scale
        verdicts[name] = {"ok": ok, "all_held": all_held, "kib": per}
        role = "verdict (browser-like client)" if name == judged[0] else "for reference"
        print(
            f"  {name} [{role}]: {per} KiB/conn (budget <= {BUDGET_KIB}); {r['open_after_hold']}/"
            f"{args.connections} open after {args.hold:g} s, server counts"
            f" {r['server_side_sockets_after_hold']}  {'PASS' if ok else 'FAIL'}"
            + ("" if at_scale else f" (only {args.connections:,} asked for)")
        )
    verdicts["verdict_on"] = judged[0] if judged else None
    rows = []
    if judged:
        name = judged[0]
        per = phases[name]["kib_per_connection"]
        bare = phases.get(name.replace("system", "bare"), {}).get("kib_per_connection")
        rows.append(
            BudgetRow(
                what=f"web-process memory per idle authenticated socket, {args.connections:,} held",
                measured=f"{per} KiB",
                baseline=f"bare python-socketio: {bare} KiB" if bare else "",
                ratio=round(per / bare, 2) if per and bare else None,
                budget=f"<= {BUDGET_KIB} KiB, 10,000 on one process",
                passed=verdicts[name]["ok"],
            )
        )
    results["rows"] = budget_rows(*rows)
    return verdicts


def main() -> int:
    args = parse_args()
    limit = raise_fd_limit()
    if limit < args.connections + 1000:
        print(
            f"open-files limit is {limit}: too low for {args.connections} sockets", file=sys.stderr
        )
        return 2
    log_dir = fresh_log_dir(RESULTS_DIR / "idle_connections-logs")
    results = results_header(args) | {"fd_limit": limit, "load_average_start": load_average()}
    with migrated_database(args.database_url, "bench_idle") as database_url:
        results["phases"] = measure(database_url, args, log_dir)
    results["load_average_end"] = load_average()
    results["budget"] = report(results, args)
    write_results(results, RESULTS_DIR / "idle_connections.json", log_dir)
    verdict_on = results["budget"]["verdict_on"]
    return 0 if verdict_on and results["budget"][verdict_on]["ok"] else 1


if __name__ == "__main__":
    run_main(main)
