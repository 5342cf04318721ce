"""Helpers of the Web Push tests: the dispatcher's push settings, subscribing, reading the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from doubles.push_service import Browser, PushService
from tests import harness
from tests.harness import ManagedProcess, Member, dispatcher_process

VAPID_SUBJECT = "mailto:push-tests@family.test"
# The loopback push service, besides a real one.
ALLOWLIST = json.dumps(["127.0.0.1", "fcm.googleapis.com"])


def dispatcher_env(
    push_service: PushService, vapid_keys: tuple[str, str], **extra: str
) -> dict[str, str]:
    """The dispatcher holds the private key; short timeouts and backoff keep the tests quick."""
    return {
        "APP_VAPID_PRIVATE_KEY": vapid_keys[0],
        "APP_VAPID_SUBJECT": VAPID_SUBJECT,
        "APP_PUSH_ENDPOINT_ALLOWLIST": ALLOWLIST,
        "DISPATCHER_PUSH_CA_FILE": str(push_service.ca_file),
        "DISPATCHER_PUSH_CONCURRENCY": "4",
        "DISPATCHER_PUSH_TIMEOUT_SECONDS": "1",
        "DISPATCHER_PUSH_LEASE_SECONDS": "3",
        "DISPATCHER_PUSH_RETRY_BASE_SECONDS": "0.1",
        "DISPATCHER_PUSH_RETRY_MAX_SECONDS": "10",
        "DISPATCHER_PUSH_MAX_ATTEMPTS": "4",
        **extra,
    }


def start_dispatcher(database_url: str, log_dir: Path, env: dict[str, str]) -> ManagedProcess:
    proc = dispatcher_process(database_url, log_dir, **env)
    proc.wait_for_log("push sender started")
    return proc


async def subscribe(api: httpx.AsyncClient, member: Member, browser: Browser) -> dict[str, Any]:
    response = await api.post(
        "/v1/push/subscriptions", headers=member.headers, json=browser.subscription()
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def grant(api: httpx.AsyncClient, parent: Member, member: Member, amount: int) -> None:
    """Karma for ``member``, whose push then says "Tidied up x<amount>"."""
    await harness.grant(api, parent, member, amount, f"Tidied up x{amount}")


async def event_ids(api: httpx.AsyncClient, member: Member, event_type: str) -> list[str]:
    """The ids of the member's delivered events of a type (REST catch-up)."""
    response = await api.get("/v1/events", headers=member.headers)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["events"] if e["type"] == event_type]


async def eventually(condition: Callable[[], bool], within: float = 15.0) -> None:
    """Poll ``condition`` (a database read) until it holds, or fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.05)


def subscription_exists(database_url: str, subscription_id: str) -> bool:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM push_subscriptions WHERE id = %s", (subscription_id,)
        ).fetchone()
    return row is not None and row[0] == 1


def pending_pushes(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM push_deliveries WHERE status <> 'sent'").fetchone()
    assert row is not None
    return int(row[0])


def deliveries(database_url: str, subscription_id: str) -> list[tuple[str, int]]:
    """(status, attempts) of each push delivery of a subscription."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, attempts FROM push_deliveries WHERE subscription_id = %s ORDER BY id",
            (subscription_id,),
        ).fetchall()
    return [(status, attempts) for status, attempts in rows]
