"""SSRF: the server POSTs to whatever a subscription names, so only push services are named.

Refused at subscribe (422): anything but https, hosts not on the allowlist (private, loopback
and link-local addresses in any spelling among them), credentials in the URL, and any URL a
parser could read two ways. Rows already stored are checked again before each request, and a
redirect is never followed: a listening socket counts the connections that would have reached it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.push.endpoints import EndpointNotAllowed, check_endpoint
from doubles.push_service import Browser, PushService
from tests.harness import Member, add_member, outbox_cli_json, run_sql, signup
from tests.push.support import (
    deliveries,
    dispatcher_env,
    eventually,
    grant,
    start_dispatcher,
    subscribe,
)

# The loopback push service, a real one, and a wildcard entry as the real list has one.
ALLOWLIST = ["127.0.0.1", "fcm.googleapis.com", "*.notify.windows.com"]


@pytest.fixture
def push_endpoint_allowlist() -> str:
    return json.dumps(ALLOWLIST)


class ConnectionCounter:
    """A TCP listener on 127.0.0.1 and ::1 (one port) that counts and drops each connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._servers: list[asyncio.Server] = []

    async def start(self) -> None:
        for _ in range(20):
            v4 = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            port: int = v4.sockets[0].getsockname()[1]
            try:
                v6 = await asyncio.start_server(self._accept, "::1", port)
            except OSError:  # taken on ::1: another port
                v4.close()
                continue
            self.port, self._servers = port, [v4, v6]
            return
        raise RuntimeError("no port free on both 127.0.0.1 and ::1")

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()

    async def _accept(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@pytest.fixture
async def counter() -> AsyncIterator[ConnectionCounter]:
    listener = ConnectionCounter()
    await listener.start()
    yield listener
    await listener.close()


async def subscribe_endpoint(
    api: httpx.AsyncClient, member: Member, endpoint: str
) -> httpx.Response:
    subscription = {**Browser(token="x", endpoint=endpoint).subscription(), "endpoint": endpoint}
    return await api.post("/v1/push/subscriptions", headers=member.headers, json=subscription)


REFUSED_AT_SUBSCRIBE = [
    # Not https.
    "http://fcm.googleapis.com/fcm/send/x",
    "http://127.0.0.1:8443/push/x",
    "ftp://fcm.googleapis.com/x",
    "//fcm.googleapis.com/fcm/send/x",
    # Private, loopback, link-local and other special addresses, in every spelling.
    "https://10.0.0.1/x",
    "https://10.255.255.255:8443/x",
    "https://172.16.0.1/x",
    "https://192.168.1.1/x",
    "https://127.0.0.2/x",
    "https://127.255.255.254/x",
    "https://169.254.169.254/latest/meta-data/",
    "https://0.0.0.0/x",
    "https://100.64.0.1/x",
    "https://127.1/x",
    "https://2130706433/x",
    "https://0x7f000001/x",
    "https://0x7f.0.0.1/x",
    "https://0177.0.0.1/x",
    "https://[::1]/x",
    "https://[::]/x",
    "https://[fc00::1]/x",
    "https://[fd00:ec2::254]/x",
    "https://[fe80::1]/x",
    "https://[fe80::1%25eth0]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://[::ffff:a00:1]/x",
    "https://[64:ff9b::a00:1]/x",
    # Hosts not on the allowlist.
    "https://localhost/x",
    "https://localhost./x",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://push.attacker.example/x",
    "https://fcm.googleapis.com.attacker.example/x",
    "https://attackerfcm.googleapis.com/x",
    "https://notify.windows.com/x",
    "https://\uff46\uff43\uff4d.googleapis.com/x",  # fullwidth "fcm"
    # Credentials, and URLs where one parser sees a host another sees as credentials.
    "https://user:secret@fcm.googleapis.com/x",
    "https://user@fcm.googleapis.com/x",
    "https://@fcm.googleapis.com/x",
    "https://:@fcm.googleapis.com/x",
    "https://fcm.googleapis.com@169.254.169.254/x",
    "https://fcm.googleapis.com:443@127.0.0.2/x",
    "https://127.0.0.1@10.0.0.1/x",
    "https://evil.example\\@fcm.googleapis.com/x",
    "https://evil.example%40fcm.googleapis.com/x",
    "https://evil.example#@fcm.googleapis.com/x",
    "https://evil.example?@fcm.googleapis.com/x",
    "https://evil.example;@fcm.googleapis.com/x",
    # Hosts a wildcard entry would match only as text: not DNS names.
    "https://evil.example%2F.notify.windows.com/x",
    "https://evil.example%00.notify.windows.com/x",
    "https://evil.example\\.notify.windows.com/x",
    "https://evil..notify.windows.com/x",
    "https://-evil.notify.windows.com/x",
    "https://evil_host.notify.windows.com/x",
    # Whitespace, control and non-ASCII characters that parsers drop or read differently.
    " https://fcm.googleapis.com/fcm/send/x",
    "https://fcm.googleapis.com/fcm/send/x\n",
    "https://fcm.googleapis.com\t/fcm/send/x",
    "https://fcm.googleapis.com/fcm/send/x y",
    "https://fcm.googleapis.com/fcm/send/x\\y",
    "https://fcm.googleapis.com/fcm/send/é",
    # Ports outside 1-65535, and fragments (never sent; nothing has a use for one).
    "https://fcm.googleapis.com:0/x",
    "https://fcm.googleapis.com:65536/x",
    "https://fcm.googleapis.com/fcm/send/x#fragment",
]

ACCEPTED_AT_SUBSCRIBE = [
    "https://fcm.googleapis.com/fcm/send/dXNlcjpwYXNz:APA91bH_-x~y.z",
    "https://FCM.googleapis.com./fcm/send/upper-case-and-root-dot",
    "https://wns2-db5p.notify.windows.com/w/?token=BQYAAAB%2bYQ%3d%3d",
    "https://127.0.0.1:8443/push/on-the-allowlist",
]


async def test_endpoints_that_could_reach_anything_but_a_push_service_are_refused(
    api: httpx.AsyncClient, database_url: str
) -> None:
    ada = await signup(api, "Ada")
    accepted = []
    for endpoint in REFUSED_AT_SUBSCRIBE:
        refused = await subscribe_endpoint(api, ada, endpoint)
        if refused.status_code != 422:
            accepted.append((endpoint, refused.status_code))
            continue
        assert refused.json()["error"]["code"] == "endpoint_not_allowed", (endpoint, refused.text)
    assert accepted == []
    assert await run_sql(database_url, "SELECT count(*) FROM push_subscriptions") == [(0,)]

    for endpoint in ACCEPTED_AT_SUBSCRIBE:  # real push services' endpoints still pass
        answer = await subscribe_endpoint(api, ada, endpoint)
        assert answer.status_code == 201, (endpoint, answer.text)


def test_an_address_is_allowed_only_when_the_allowlist_names_it() -> None:
    """A wildcard entry matches DNS names under it, never an IP address that ends the same."""
    for endpoint, allowlist in (
        ("https://127.0.0.1/x", ["*.0.0.1"]),
        ("https://10.0.0.1/x", ["*.0.1"]),
        ("https://[::1]/x", ["*.1"]),
    ):
        with pytest.raises(EndpointNotAllowed):
            check_endpoint(endpoint, allowlist)
    check_endpoint("https://127.0.0.1/x", ["127.0.0.1"])
    check_endpoint("https://[::1]/x", ["::1"])


def store_subscriptions(database_url: str, member: Member, endpoints: list[str]) -> list[str]:
    """Rows as a database may hold them (written before a rule existed, or by hand)."""
    keys = Browser(token="x", endpoint="").subscription()["keys"]
    ids = []
    with psycopg.connect(database_url) as conn:
        for endpoint in endpoints:
            subscription_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                " VALUES (%s, %s, %s, %s, %s)",
                (subscription_id, member.id, endpoint, keys["p256dh"], keys["auth"]),
            )
            ids.append(subscription_id)
    return ids


def dead_and_refused(database_url: str, subscription_id: str, count: int) -> bool:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT status, last_error FROM push_deliveries WHERE subscription_id = %s",
            (subscription_id,),
        ).fetchall()
    return len(rows) == count and all(
        status == "dead" and (error or "").startswith("endpoint not allowed")
        for status, error in rows
    )


async def test_stored_endpoints_that_are_not_allowed_get_no_connection(
    api: httpx.AsyncClient,
    push_service: PushService,
    counter: ConnectionCounter,
    vapid_keys: tuple[str, str],
    database_url: str,
    log_dir: Path,
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    port = counter.port
    # Each would connect to the counter if the dispatcher sent to it.
    bad = [
        f"http://127.0.0.1:{port}/push/plain-http",
        f"https://user@127.0.0.1:{port}/push/userinfo",
        f"https://fcm.googleapis.com@127.0.0.1:{port}/push/userinfo",
        f"https://:@127.0.0.1:{port}/push/empty-userinfo",
        f"https://localhost:{port}/push/name",
        f"https://127.1:{port}/push/short-form",
        f"https://2130706433:{port}/push/decimal",
        f"https://0x7f.0.0.1:{port}/push/hex",
        f"https://[::1]:{port}/push/v6-loopback",
        f"https://[::ffff:127.0.0.1]:{port}/push/v4-mapped",
        f" https://127.0.0.1:{port}/push/leading-space",
        f"https://127.0.0.1:{port}\t/push/tab",
        f"https://127.0.0.1:{port}/push/new\nline",
    ]
    bad_ids = store_subscriptions(database_url, kim, bad)
    working = push_service.new_browser()
    working_id = (await subscribe(api, kim, working))["id"]

    # Allowlist as at subscribe: only the bad spellings are refused.
    env = dispatcher_env(
        push_service, vapid_keys, APP_PUSH_ENDPOINT_ALLOWLIST=json.dumps(ALLOWLIST)
    )
    dispatcher = start_dispatcher(database_url, log_dir, env)
    try:
        await grant(api, ada, kim, 1)
        await push_service.wait_until(lambda: len(push_service.pushes(working)) == 1)
        for subscription_id in bad_ids:
            await eventually(lambda s=subscription_id: dead_and_refused(database_url, s, 1))
        assert counter.connections == 0

        # The counter does count: a stored endpoint that is allowed reaches it (and, as it speaks
        # no TLS, fails).
        reachable = await subscribe_endpoint(api, kim, f"https://127.0.0.1:{port}/push/allowed")
        assert reachable.status_code == 201, reachable.text
        reachable_id = reachable.json()["id"]
        await grant(api, ada, kim, 2)
        await eventually(lambda: counter.connections > 0)
        await eventually(lambda: deliveries(database_url, reachable_id) == [("dead", 4)])
    finally:
        dispatcher.stop()

    # The allowlist no longer names 127.0.0.1: the rows subscribed while it did get nothing.
    narrowed = dispatcher_env(
        push_service, vapid_keys, APP_PUSH_ENDPOINT_ALLOWLIST=json.dumps(["fcm.googleapis.com"])
    )
    dispatcher = start_dispatcher(database_url, log_dir, narrowed)
    try:
        counter.connections = 0
        await grant(api, ada, kim, 3)
        for subscription_id in (reachable_id, working_id):
            await eventually(
                lambda s=subscription_id: deliveries(database_url, s)[-1] == ("dead", 1)
            )
        assert counter.connections == 0
        assert len(push_service.pushes(working)) == 2
        dead = await asyncio.to_thread(
            outbox_cli_json, database_url, "list", "--push", "--status", "dead"
        )
        assert sum("endpoint not allowed" in (d["last_error"] or "") for d in dead) == 2 + 3 * len(
            bad
        )
    finally:
        dispatcher.stop()


async def test_no_redirect_is_followed(
    api: httpx.AsyncClient,
    push_service: PushService,
    counter: ConnectionCounter,
    vapid_keys: tuple[str, str],
    database_url: str,
    log_dir: Path,
) -> None:
    """A push service's redirect, even to an allowed host, ends the push: no request follows."""
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    target = f"https://127.0.0.1:{counter.port}/push/redirected"
    redirects = {}
    for status in (301, 302, 303, 307, 308):
        browser = push_service.new_browser()
        push_service.script(browser, (status, {"Location": target}))
        redirects[status] = (browser, (await subscribe(api, kim, browser))["id"])
    env = dispatcher_env(
        push_service, vapid_keys, APP_PUSH_ENDPOINT_ALLOWLIST=json.dumps(ALLOWLIST)
    )
    dispatcher = start_dispatcher(database_url, log_dir, env)
    try:
        await grant(api, ada, kim, 1)
        for status, (browser, subscription_id) in redirects.items():
            await eventually(lambda s=subscription_id: deliveries(database_url, s) == [("dead", 1)])
            assert [p.answer for p in push_service.pushes(browser)] == [
                str((status, {"Location": target}))
            ]
        await asyncio.sleep(0.5)  # time for a follow-up request that must not come
        assert counter.connections == 0
        dead = await asyncio.to_thread(
            outbox_cli_json, database_url, "list", "--push", "--status", "dead"
        )
        assert sorted(d["last_error"] for d in dead) == [f"HTTP {s}" for s in sorted(redirects)]
    finally:
        dispatcher.stop()
