"""/v1/me latency for a bystander while one address floods log-in with wrong passwords.

    .venv/bin/python bench/login_flood.py [--floods 5] [--logins 60] [--short] [--database-url URL]

The real ``web`` process (uvicorn) on a scratch database: a victim and a bystander sign up; then
each flood sends ``--logins`` concurrent wrong-password log-ins for the victim from one address
(X-Forwarded-For, as from a load balancer) while the bystander asks ``GET /v1/me`` every 20 ms.
Floods come from a new address each, so every one meets the throttle from scratch (the first
log-ins hash a password, the rest are refused with 429). Beside it, the same /v1/me loop with no
flood. Prints p50/p90/p99/max of both and the flood's answers, writes
bench/results/login_flood.json, and exits 1 when the flood's /v1/me p99 is over 250 ms (the
bystander must not wait on the flood's password hashing) or a request failed.
``--short`` is one flood, a 3 s baseline and at most 10 s of waiting for a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from harness import (
    RESULTS_DIR,
    add_database_url_option,
    free_port,
    load_average,
    migrate,
    results_header,
    run_main,
    scratch_database,
    start_child,
    summarize_ms,
    system_env,
    uvicorn_argv,
    wait_for_quiet,
    write_results,
)

PASSWORD = "correct horse battery"
ME_INTERVAL_SECONDS = 0.02
P99_BUDGET_MS = 250.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--floods", type=int, default=5, help="floods, one address each")
    parser.add_argument("--logins", type=int, default=60, help="concurrent log-ins per flood")
    parser.add_argument("--baseline-seconds", type=float, default=10, help="/v1/me with no flood")
    parser.add_argument("--short", action="store_true", help="one flood, a 3 s baseline")
    add_database_url_option(parser)
    args = parser.parse_args()
    if args.short:
        args.floods, args.baseline_seconds = 1, 3.0
    return args


async def sign_up(api: httpx.AsyncClient, name: str) -> tuple[str, dict[str, str]]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    answer = await api.post(
        "/v1/auth/signup",
        json={"familyName": name, "displayName": name, "email": email, "password": PASSWORD},
    )
    answer.raise_for_status()
    return email, {"Authorization": f"Bearer {answer.json()['accessToken']}"}


class MeLoop:
    """The bystander: GET /v1/me every 20 ms while running, timing each answer."""

    def __init__(self, api: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.api, self.headers = api, headers
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.running = True

    async def run(self) -> None:
        while self.running:
            started = time.perf_counter()
            answer = await self.api.get("/v1/me", headers=self.headers)
            self.latencies.append(time.perf_counter() - started)
            self.statuses[answer.status_code] += 1
            await asyncio.sleep(ME_INTERVAL_SECONDS)


async def measure(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as api:
        victim, _ = await sign_up(api, "Victim")
        _, bystander = await sign_up(api, "Bystander")
        wrong = {"email": victim, "password": "not the password"}

        quiet = wait_for_quiet(timeout=10 if args.short else 120, label="the baseline")
        baseline = MeLoop(api, bystander)
        task = asyncio.create_task(baseline.run())
        await asyncio.sleep(args.baseline_seconds)
        baseline.running = False
        await task

        during = MeLoop(api, bystander)
        answers: Counter[int] = Counter()
        flood_seconds = []
        for flood in range(args.floods):
            attacker = {"X-Forwarded-For": f"203.0.113.{flood + 1}"}
            task = asyncio.create_task(during.run())
            started = time.perf_counter()
            flood_answers = await asyncio.gather(
                *(
                    api.post("/v1/auth/login", json=wrong, headers=attacker)
                    for _ in range(args.logins)
                )
            )
            flood_seconds.append(time.perf_counter() - started)
            during.running = False
            await task
            during.running = True
            answers.update(answer.status_code for answer in flood_answers)
    return {
        "quiet": quiet,
        "baseline_me_ms": summarize_ms(baseline.latencies) | {"statuses": baseline.statuses},
        "flood_me_ms": summarize_ms(during.latencies) | {"statuses": during.statuses},
        "login_statuses": answers,
        "flood_seconds": [round(s, 3) for s in flood_seconds],
    }


def report(results: dict[str, Any], args: argparse.Namespace) -> bool:
    print(f"\n/v1/me during log-in floods ({args.floods} x {args.logins} wrong passwords)")
    print(f"  code under test: {results['source']}; load average {results['load_average']}")
    print(f"  {'/v1/me latency, ms':<28}{'n':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for label, key in (("no flood", "baseline_me_ms"), ("during the floods", "flood_me_ms")):
        stats = results[key]
        numbers = "".join(
            f"{stats.get(k, float('nan')):8.1f}" for k in ("p50", "p90", "p99", "max")
        )
        print(f"  {label:<28}{stats['n']:6d}{numbers}   statuses {dict(stats['statuses'])}")
    logins, took = dict(results["login_statuses"]), results["flood_seconds"]
    print(f"  log-in answers: {logins}; the floods took {took} s")
    p99 = results["flood_me_ms"].get("p99", float("inf"))
    me_statuses = set(results["flood_me_ms"]["statuses"]) | set(
        results["baseline_me_ms"]["statuses"]
    )
    ok = (
        p99 < P99_BUDGET_MS
        and me_statuses == {200}
        and not any(s >= 500 for s in results["login_statuses"])
    )
    verdict = "PASS" if ok else "FAIL"
    budget = f"/v1/me p99 during the floods < {P99_BUDGET_MS:g} ms, every answer 200"
    print(f"Budget: {budget}: {p99:.1f} ms  {verdict}")
    return ok


def main() -> int:
    args = parse_args()
    results = results_header(args)
    with (
        scratch_database(args.database_url, "bench_login") as database_url,
        tempfile.TemporaryDirectory() as log_dir,
    ):
        env = system_env(database_url, APP_LOGIN_WINDOW_SECONDS="3")
        migrate(database_url, env)
        port = free_port()
        web = start_child(
            "web", uvicorn_argv("app.main:create_app", port, "--factory"), env, Path(log_dir)
        )
        try:
            web.wait_for_http(f"http://127.0.0.1:{port}/healthz")
            results |= asyncio.run(measure(f"http://127.0.0.1:{port}", args))
        finally:
            web.stop()
    results["load_average"] = load_average()
    ok = report(results, args)
    write_results(results, RESULTS_DIR / "login_flood.json")
    return 0 if ok else 1


if __name__ == "__main__":
    run_main(main)
