"""A 429 pauses its push service: no attempt is counted, and the service's other pushes wait."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg

from bench.push_service import PushService
from tests.harness import add_member, signup
from tests.push.support import (
    deliveries,
    dispatcher_env,
    eventually,
    grant,
    start_dispatcher,
    subscribe,
)

RETRY_AFTER = 3.0


def last_errors(database_url: str, subscription_id: str) -> list[str | None]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT last_error FROM push_deliveries WHERE subscription_id = %s ORDER BY id",
            (subscription_id,),
        ).fetchall()
    return [error for (error,) in rows]


async def test_a_429_pauses_its_push_service_without_costing_attempts(
    api: httpx.AsyncClient,
    push_service: PushService,
    vapid_keys: tuple[str, str],
    database_url: str,
    log_dir: Path,
    tmp_path: Path,
) -> None:
    """One attempt allowed: a 429 that counted would kill the push at once."""
    (tmp_path / "other").mkdir()
    other_service = PushService(vapid_keys[1], tmp_path / "other")
    await other_service.start()
    trusted = tmp_path / "both-cas.pem"
    trusted.write_bytes(push_service.ca_file.read_bytes() + other_service.ca_file.read_bytes())
    env = dispatcher_env(
        push_service,
        vapid_keys,
        DISPATCHER_PUSH_CA_FILE=str(trusted),
        DISPATCHER_PUSH_MAX_ATTEMPTS="1",
    )
    dispatcher = start_dispatcher(database_url, log_dir, env)
    try:
        ada = await signup(api, "Ada")
        kim = await add_member(api, ada, "Kim", "child")
        limited = push_service.new_browser()
        limited_id = (await subscribe(api, kim, limited))["id"]
        push_service.script(limited, (429, {"Retry-After": str(int(RETRY_AFTER))}))

        await grant(api, ada, kim, 1)
        await push_service.wait_until(lambda: len(push_service.pushes()) == 1)
        [limited_at] = [p.at for p in push_service.pushes()]

        # While the service is paused: its queued pushes wait, the other service's go.
        same_service, elsewhere = push_service.new_browser(), other_service.new_browser()
        same_id = (await subscribe(api, kim, same_service))["id"]
        elsewhere_id = (await subscribe(api, kim, elsewhere))["id"]
        await grant(api, ada, kim, 2)
        await other_service.wait_until(lambda: len(other_service.pushes(elsewhere)) == 1)
        # Claimed with it and put back, saying why (``outbox list --push`` shows it).
        await eventually(lambda: "429" in (last_errors(database_url, same_id)[0] or ""))
        assert time.monotonic() < limited_at + RETRY_AFTER
        assert len(push_service.pushes()) == 1  # nothing more was sent to the paused service
        assert deliveries(database_url, limited_id) == [("pending", 0), ("pending", 0)]
        assert deliveries(database_url, same_id) == [("pending", 0)]

        # After Retry-After, everything is sent, each on its first counted attempt.
        for subscription_id, count in ((limited_id, 2), (same_id, 1), (elsewhere_id, 1)):
            await eventually(
                lambda s=subscription_id, n=count: deliveries(database_url, s) == [("sent", 1)] * n,
                within=RETRY_AFTER + 10,
            )
        later = [p for p in push_service.pushes() if p.at > limited_at]
        assert len(later) == 3
        assert min(p.at for p in later) - limited_at >= RETRY_AFTER
        assert push_service.refused == []
        assert other_service.refused == []
    finally:
        dispatcher.stop()
        await other_service.close()
