"""Web Push throughput: pushes/s the dispatcher's push sender sustains, encryption included.

    .venv/bin/python bench/push_throughput.py [--pushes 5000] [--devices 200] [--latency-ms 100]
        [--concurrency 32] [--database-url URL]

A backlog of ``--pushes`` push deliveries for ``--devices`` subscriptions is written straight
into a scratch database's push queue; then the real dispatcher (``python -m dispatcher``, default
push settings) drains it against the loopback push service the tests use (doubles/push_service.py),
which checks each request's VAPID JWT and decrypts its aes128gcm body, on real HTTPS, and answers
each after ``--latency-ms`` (a push service across the internet; 0: at once). The rate
is taken from the rows' own ``sent_at`` (first to last). Beside it, a baseline: pywebpush's
encryption alone, on one core. Prints a table and writes bench/results/push_throughput.json;
exits 1 if the budget (>= 1,000 pushes/s at 100 ms of latency) is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from harness import (
    RESULTS_DIR,
    BudgetRow,
    add_database_url_option,
    budget_rows,
    cpu_percent,
    cpu_snapshot,
    fresh_log_dir,
    migrated_database,
    results_header,
    run_main,
    start_child,
    system_env,
    write_results,
)
from psycopg.types.json import Jsonb

from app.push.notifications import encoded
from app.vapid_keys import generate_key_pair
from doubles.push_service import PushService

BUDGET_PER_SECOND = 1000
BUDGET_LATENCY_MS = 100.0

# A typical notification: a chat message's, body clipped at 240 characters.
MESSAGE = {
    "id": "evt_123456",
    "type": "chat.message.created",
    "version": 1,
    "occurredAt": "2026-11-25T10:00:00.000Z",
    "familyId": str(uuid.uuid4()),
    "title": "New message",
    "body": "x" * 240,
    "tag": f"chat:{uuid.uuid4()}",
    "url": "/",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=5000, help="push deliveries to drain")
    parser.add_argument("--devices", type=int, default=200, help="subscriptions they go to")
    parser.add_argument(
        "--latency-ms", type=float, default=100, help="how long the push service takes to answer"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="DISPATCHER_PUSH_CONCURRENCY (its default)"
    )
    add_database_url_option(parser)
    return parser.parse_args()


def encryption_baseline(seconds: float = 2.0) -> float:
    """Messages/s pywebpush encrypts (aes128gcm, a fresh ECDH key each) on one core."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from pywebpush import WebPusher

    from app.vapid_keys import b64url_encode, public_key_bytes

    key = ec.generate_private_key(ec.SECP256R1())
    info = {
        "endpoint": "https://push.invalid/x",
        "keys": {
            "p256dh": b64url_encode(public_key_bytes(key.public_key())),
            "auth": b64url_encode(os.urandom(16)),
        },
    }
    data = encoded(MESSAGE)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        WebPusher(info).encode(data, "aes128gcm")
        count += 1
    return count / (time.perf_counter() - started)


def seed(database_url: str, service: PushService, pushes: int, devices: int) -> None:
    """One user with ``devices`` subscriptions, and ``pushes`` pending deliveries among them."""
    family_id, user_id = uuid.uuid4(), uuid.uuid4()
    browsers = [service.new_browser() for _ in range(devices)]
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO families (id, name) VALUES (%s, 'Bench')", (family_id,))
        conn.execute(
            "INSERT INTO users (id, family_id, email, display_name, role, password_hash)"
            " VALUES (%s, %s, 'bench@family.test', 'Bench', 'child', 'x')",
            (user_id, family_id),
        )
        subscription_ids = []
        for browser in browsers:
            keys = browser.subscription()["keys"]
            subscription_id = uuid.uuid4()
            subscription_ids.append(subscription_id)
            conn.execute(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                " VALUES (%s, %s, %s, %s, %s)",
                (subscription_id, user_id, browser.endpoint, keys["p256dh"], keys["auth"]),
            )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO push_deliveries (subscription_id, event_id, event_type, payload,"
                " topic, ttl_seconds, urgency) VALUES (%s, %s, %s, %s, NULL, 86400, 'high')",
                [
                    (subscription_ids[n % devices], n, MESSAGE["type"], Jsonb(MESSAGE))
                    for n in range(pushes)
                ],
            )


def sent_window(database_url: str) -> tuple[int, float]:
    """How many deliveries are sent, and the seconds from the first to the last of them."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(extract(epoch FROM max(sent_at) - min(sent_at)), 0)"
            " FROM push_deliveries WHERE status = 'sent'"
        ).fetchone()
    assert row is not None
    return int(row[0]), float(row[1])


async def measure(database_url: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    private_key, public_key = generate_key_pair()
    with tempfile.TemporaryDirectory() as scratch:
        service = PushService(public_key, Path(scratch), latency_seconds=args.latency_ms / 1000)
        await service.start()
        try:
            seed(database_url, service, args.pushes, args.devices)
            env = system_env(
                database_url,
                APP_VAPID_PRIVATE_KEY=private_key,
                APP_VAPID_SUBJECT="mailto:bench@family.test",
                # The loopback push service (the default list has real push services only).
                APP_PUSH_ENDPOINT_ALLOWLIST=json.dumps(["127.0.0.1"]),
                DISPATCHER_PUSH_CA_FILE=str(service.ca_file),
                DISPATCHER_LOG_LEVEL="INFO",
            )
            if args.concurrency is not None:
                env["DISPATCHER_PUSH_CONCURRENCY"] = str(args.concurrency)
            dispatcher = start_child(
                "dispatcher", [sys.executable, "-m", "dispatcher"], env, log_dir
            )
            try:
                await asyncio.to_thread(dispatcher.wait_for_log, "push sender started")
                dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
                before = cpu_snapshot({"dispatcher": dispatcher}, str(dbname))
                deadline = time.monotonic() + 600
                while (await asyncio.to_thread(sent_window, database_url))[0] < args.pushes:
                    dispatcher.check_alive()
                    if time.monotonic() > deadline:
                        raise TimeoutError("the push backlog did not drain in 10 minutes")
                    await asyncio.sleep(0.2)
                after = cpu_snapshot({"dispatcher": dispatcher}, str(dbname))
            finally:
                await asyncio.to_thread(dispatcher.stop)
            sent, seconds = sent_window(database_url)
            return {
                "pushes": sent,
                "seconds": round(seconds, 3),
                "pushes_per_second": round((sent - 1) / seconds, 1) if seconds else None,
                "received_by_push_service": len(service.received),
                "refused_by_push_service": len(service.refused),
                # The push service double (decrypting every message) runs in "driver".
                "cpu_percent_of_one_core": cpu_percent(before, after),
            }
        finally:
            await service.close()


def main() -> int:
    args = parse_args()
    log_dir = fresh_log_dir(RESULTS_DIR / "push_throughput-logs")
    # Not the database URL: it may hold a password.
    results = results_header(args)
    print("baseline: pywebpush encryption alone, one core ...", flush=True)
    results["encryption_only_per_second"] = round(encryption_baseline(), 1)
    with migrated_database(args.database_url, "bench_push") as database_url:
        print(f"system: draining {args.pushes} pushes to {args.devices} devices ...", flush=True)
        results["system"] = asyncio.run(measure(database_url, args, log_dir))
    system = results["system"]
    print(f"{'encryption only (1 core)':<40}{results['encryption_only_per_second']:>10} /s")
    print(f"{'push sender -> local push service':<40}{system['pushes_per_second']:>10} /s")
    print(f"cpu (% of one core): {system['cpu_percent_of_one_core']}")
    complete = (
        system["received_by_push_service"] >= args.pushes and not system["refused_by_push_service"]
    )
    rate = system["pushes_per_second"] or 0.0
    ok = complete and rate >= BUDGET_PER_SECOND and args.latency_ms >= BUDGET_LATENCY_MS
    print(
        f"Budget: >= {BUDGET_PER_SECOND:,} pushes/s at {BUDGET_LATENCY_MS:g} ms of push-service"
        f" latency: {rate:,.0f}/s at {args.latency_ms:g} ms  {'PASS' if ok else 'FAIL'}"
    )
    results["rows"] = budget_rows(
        BudgetRow(
            what=f"Web Push throughput, push service answering after {args.latency_ms:g} ms",
            measured=f"{rate:,.0f} pushes/s",
            baseline=f"pywebpush encryption alone: {results['encryption_only_per_second']:,.0f}/s"
            " on one core",
            ratio=None,
            budget=f">= {BUDGET_PER_SECOND:,}/s at {BUDGET_LATENCY_MS:g} ms",
            passed=ok,
        )
    )
    write_results(results, RESULTS_DIR / "push_throughput.json")
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
