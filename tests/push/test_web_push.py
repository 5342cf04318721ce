"""Web Push end to end: the real web and dispatcher processes against a loopback push service.

The push service (``doubles/push_service.py``) verifies VAPID and decrypts every message, so a push
counted here is one a browser could have read.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from app.push.endpoints import host_allowed
from app.push.notifications import topic_of
from dispatcher.push_sender import retry_after_seconds
from doubles.push_service import HANG, PushService, Slow
from doubles.socket_clients import SocketRecorder
from tests.harness import ManagedProcess, add_member, outbox_cli_json, signup
from tests.push.support import (
    deliveries,
    dispatcher_env,
    event_ids,
    eventually,
    grant,
    pending_pushes,
    start_dispatcher,
    subscribe,
    subscription_exists,
)


async def test_grant_pushes_to_each_device_of_a_child_with_no_visible_app(
    api: httpx.AsyncClient,
    web: str,
    dispatcher: ManagedProcess,
    push_service: PushService,
    database_url: str,
) -> None:
    """A karma grant to a child with no socket reaches each of their devices, readable."""
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    lou = await add_member(api, ada, "Lou", "child")
    phone, laptop, lou_phone = (push_service.new_browser() for _ in range(3))
    await subscribe(api, kim, phone)
    await subscribe(api, kim, laptop)
    lou_subscription = await subscribe(api, lou, lou_phone)
    lou_socket = SocketRecorder(web, lou.token)
    await lou_socket.connect()  # visible: a socket counts as visible until it says otherwise

    await grant(api, ada, kim, 5)
    await push_service.wait_until(lambda: len(push_service.pushes()) >= 2)
    [evt_id] = await event_ids(api, kim, "karma.awarded")
    for browser in (phone, laptop):
        [push] = push_service.pushes(browser)
        assert push.message["id"] == evt_id
        assert push.message["type"] == "karma.awarded"
        assert push.message["title"] == "+5 karma"
        assert push.message["body"] == "Tidied up x5 (balance 5)"
        assert push.message["familyId"] == ada.family_id
        assert "data" not in push.message  # trimmed to what a notification needs
        assert push.headers["ttl"] == "86400"
        assert push.headers["urgency"] == "normal"
        assert len(push.headers["topic"]) <= 32

    # Lou has the app open: the socket event only. The push decision is made in the same
    # transaction as the socket handoff, so once the event is on the socket it is final.
    await grant(api, ada, lou, 2)
    await lou_socket.wait_until(lambda events: any(n == "karma.awarded" for n, _ in events))
    assert deliveries(database_url, lou_subscription["id"]) == []
    # And a later push to Kim has overtaken nothing meant for Lou's phone.
    await grant(api, ada, kim, 1)
    await push_service.wait_until(lambda: len(push_service.pushes()) >= 4)
    assert push_service.pushes(lou_phone) == []
    assert push_service.refused == []
    await lou_socket.disconnect()


async def test_each_push_service_answer_is_honoured(
    api: httpx.AsyncClient,
    dispatcher: ManagedProcess,
    push_service: PushService,
    database_url: str,
) -> None:
    """410 drops the device; 429 waits Retry-After; 5xx retries, then dies; 413 shrinks; 400 dies.

    The dispatcher allows 4 attempts (``dispatcher_env``).
    """
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    browsers = [push_service.new_browser() for _ in range(6)]
    gone, limited, flaky, broken, big, refused = browsers
    ids = {b.token: (await subscribe(api, kim, b))["id"] for b in browsers}
    push_service.script(gone, 410)
    push_service.script(limited, (429, {"Retry-After": "2"}))
    push_service.script(flaky, 500, 500, 500)
    push_service.script(broken, 500, 503, 500, 502)
    push_service.script(big, 413)
    push_service.script(refused, 400)

    await grant(api, ada, kim, 5)
    await eventually(lambda: not subscription_exists(database_url, ids[gone.token]))
    [first_id] = await event_ids(api, kim, "karma.awarded")
    await eventually(lambda: deliveries(database_url, ids[flaky.token]) == [("sent", 4)])
    assert [p.answer for p in push_service.pushes(flaky)] == ["500", "500", "500", "201"]
    assert {p.message["id"] for p in push_service.pushes(flaky)} == {first_id}
    await eventually(lambda: deliveries(database_url, ids[big.token]) == [("sent", 1)])
    whole, shrunk = push_service.pushes(big)
    assert (whole.message["id"], shrunk.message["id"]) == (first_id, first_id)
    assert (whole.message["body"], shrunk.message["body"]) == ("Tidied up x5 (balance 5)", "")
    await eventually(lambda: deliveries(database_url, ids[refused.token]) == [("dead", 1)])
    await eventually(lambda: deliveries(database_url, ids[broken.token]) == [("dead", 4)])
    # A 429 costs no attempt (``test_rate_limit.py``).
    await eventually(lambda: deliveries(database_url, ids[limited.token]) == [("sent", 1)])
    asked, retried = push_service.pushes(limited)
    assert retried.at - asked.at >= 2.0

    # The next event goes to every device but the gone one, which has nothing queued either.
    await grant(api, ada, kim, 1)
    for browser in (limited, flaky, broken, big, refused):
        # The second row, sent (the first may already read ("sent", 1)).
        await eventually(
            lambda b=browser: deliveries(database_url, ids[b.token])[1:] == [("sent", 1)]
        )
    assert len(push_service.pushes(gone)) == 1
    assert push_service.refused == []

    stats = (await asyncio.to_thread(outbox_cli_json, database_url, "stats"))["push"]
    assert (stats["pending"], stats["sent"], stats["dead"], stats["subscriptions"]) == (0, 8, 2, 5)
    dead = await asyncio.to_thread(
        outbox_cli_json, database_url, "list", "--push", "--status", "dead"
    )
    assert sorted((d["type"], d["attempts"], d["last_error"]) for d in dead) == [
        ("karma.awarded", 1, "HTTP 400"),
        ("karma.awarded", 4, "HTTP 502"),
    ]


def in_flight(database_url: str, subscription_id: str) -> bool:
    """Whether the subscription's one push is claimed and being sent, with no failure yet."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT claim_token IS NOT NULL AND last_error IS NULL FROM push_deliveries"
            " WHERE subscription_id = %s",
            (subscription_id,),
        ).fetchall()
    return [bool(in_flight) for (in_flight,) in rows] == [True]


async def test_a_hanging_push_service_does_not_delay_socket_events(
    api: httpx.AsyncClient,
    web: str,
    push_service: PushService,
    database_url: str,
    log_dir: Path,
    vapid_keys: tuple[str, str],
) -> None:
    """While every push slot hangs on an unresponsive push service, socket events flow."""
    env = dispatcher_env(
        push_service,
        vapid_keys,
        DISPATCHER_PUSH_CONCURRENCY="2",
        DISPATCHER_PUSH_TIMEOUT_SECONDS="2",
        DISPATCHER_PUSH_LEASE_SECONDS="5",
    )
    proc = await asyncio.to_thread(start_dispatcher, database_url, log_dir, env)
    try:
        ada = await signup(api, "Ada")
        kim = await add_member(api, ada, "Kim", "child")
        lou = await add_member(api, ada, "Lou", "child")
        stuck = [push_service.new_browser() for _ in range(2)]
        ids = [(await subscribe(api, kim, b))["id"] for b in stuck]
        for browser in stuck:
            push_service.script(browser, HANG)
        lou_socket = SocketRecorder(web, lou.token)
        await lou_socket.connect()

        await grant(api, ada, kim, 1)
        await push_service.wait_until(lambda: push_service.hanging == 2)
        for n in range(1, 4):
            await grant(api, ada, lou, n)
            await lou_socket.wait_until(
                lambda events, n=n: sum(name == "karma.awarded" for name, _ in events) == n
            )
        # All of it happened while both push requests were still hanging: the dispatcher still
        # holds their claims and has recorded no failure (a timeout would have been one).
        assert [in_flight(database_url, s) for s in ids] == [True, True]
        # The hung requests time out and are retried (and answered, this time).
        for subscription_id in ids:
            await eventually(lambda s=subscription_id: deliveries(database_url, s) == [("sent", 2)])
        await lou_socket.disconnect()
    finally:
        proc.stop()


async def test_pushes_left_by_a_killed_dispatcher_are_sent_after_restart(
    api: httpx.AsyncClient,
    web: str,
    push_service: PushService,
    database_url: str,
    log_dir: Path,
    vapid_keys: tuple[str, str],
) -> None:
    """SIGKILL mid-burst: every push is sent after a restart; only in-flight ones twice."""
    concurrency = 4
    env = dispatcher_env(push_service, vapid_keys, DISPATCHER_PUSH_CONCURRENCY=str(concurrency))
    first = await asyncio.to_thread(start_dispatcher, database_url, log_dir, env)
    second: ManagedProcess | None = None
    try:
        ada = await signup(api, "Ada")
        kim = await add_member(api, ada, "Kim", "child")
        browsers = [push_service.new_browser() for _ in range(12)]
        for browser in browsers:
            await subscribe(api, kim, browser)
            push_service.script(browser, Slow(0.2), Slow(0.2))
        await grant(api, ada, kim, 1)
        await grant(api, ada, kim, 2)
        await push_service.wait_until(lambda: len(push_service.pushes()) >= 6)
        first.kill()
        assert pending_pushes(database_url) > 0  # the burst was cut short

        second = await asyncio.to_thread(start_dispatcher, database_url, log_dir, env)
        await eventually(lambda: pending_pushes(database_url) == 0, within=20)
        events = await event_ids(api, kim, "karma.awarded")
        received = [(p.token, p.message["id"]) for p in push_service.pushes()]
        assert set(received) == {(b.token, e) for b in browsers for e in events}
        assert len(received) - len(set(received)) <= concurrency
        assert push_service.refused == []
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_a_push_answered_after_its_lease_moved_is_not_marked_sent(
    api: httpx.AsyncClient,
    push_service: PushService,
    database_url: str,
    log_dir: Path,
    vapid_keys: tuple[str, str],
) -> None:
    """Pushes answered together are recorded together; the one whose claim was taken meanwhile
    (another sender's now) is left to that sender, the others are marked sent."""
    proc = await asyncio.to_thread(
        start_dispatcher, database_url, log_dir, dispatcher_env(push_service, vapid_keys)
    )
    try:
        ada = await signup(api, "Ada")
        kim = await add_member(api, ada, "Kim", "child")
        browsers = [push_service.new_browser() for _ in range(3)]
        ids = [(await subscribe(api, kim, b))["id"] for b in browsers]
        for browser in browsers:
            push_service.script(browser, Slow(0.5))  # the timeout is 1 s
        await grant(api, ada, kim, 1)
        await push_service.wait_until(lambda: len(push_service.pushes()) == 3)
        with psycopg.connect(database_url) as conn:
            conn.execute(
                "UPDATE push_deliveries SET claimed_by = 'elsewhere',"
                " claim_token = gen_random_uuid() WHERE subscription_id = %s",
                (ids[0],),
            )
        for subscription_id in ids[1:]:
            await eventually(lambda s=subscription_id: deliveries(database_url, s) == [("sent", 1)])
        await asyncio.to_thread(proc.wait_for_log, "push sent after its lease was lost")
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT status, claimed_by FROM push_deliveries WHERE subscription_id = %s",
                (ids[0],),
            ).fetchone()
        assert row == ("pending", "elsewhere")
    finally:
        proc.stop()


async def test_subscriptions_are_validated_per_device_and_idempotent(
    api: httpx.AsyncClient, push_service: PushService, vapid_keys: tuple[str, str]
) -> None:
    """Only https endpoints of allowed push services, with real keys; re-subscribing is a no-op."""
    key = await api.get("/v1/push/vapid-public-key")
    assert key.status_code == 200, key.text
    assert key.json() == {"publicKey": vapid_keys[1]}
    ada = await signup(api, "Ada")
    ben = await add_member(api, ada, "Ben", "parent")
    phone, laptop = push_service.new_browser(), push_service.new_browser()

    created = await subscribe(api, ada, phone)
    again = await api.post("/v1/push/subscriptions", headers=ada.headers, json=phone.subscription())
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created["id"]
    await subscribe(api, ada, laptop)
    fcm = {**phone.subscription(), "endpoint": "https://fcm.googleapis.com/fcm/send/d3v1c3"}
    allowed = await api.post("/v1/push/subscriptions", headers=ada.headers, json=fcm)
    assert allowed.status_code == 201, allowed.text

    for endpoint in (
        f"http://127.0.0.1:{push_service.origin.rsplit(':', 1)[1]}/push/x",  # not https
        "https://push.attacker.example/push/x",  # not an allowed push service
        "https://fcm.googleapis.com.attacker.example/fcm/send/x",
        "https://user:secret@fcm.googleapis.com/fcm/send/x",
        "not a url",
    ):
        bad = {**phone.subscription(), "endpoint": endpoint}
        refused = await api.post("/v1/push/subscriptions", headers=ada.headers, json=bad)
        assert refused.status_code == 422, (endpoint, refused.text)
        assert refused.json()["error"]["code"] == "endpoint_not_allowed"

    off_curve = "BA" + "A" * 85  # 0x04 then zeros: 65 bytes, but not a point on P-256
    short_auth = "AAAAAAAAAAA"  # 8 bytes
    for keys in ({"p256dh": off_curve}, {"auth": short_auth}, {"p256dh": "not base64!"}):
        bad = phone.subscription()
        bad["keys"] = {**bad["keys"], **keys}
        refused = await api.post("/v1/push/subscriptions", headers=ada.headers, json=bad)
        assert refused.status_code == 422, (keys, refused.text)
        assert refused.json()["error"]["code"] == "validation_error"

    anonymous = await api.post("/v1/push/subscriptions", json=laptop.subscription())
    assert anonymous.status_code == 401
    listed = await api.get("/v1/push/subscriptions", headers=ada.headers)
    assert sorted(s["endpoint"] for s in listed.json()) == sorted(
        [phone.endpoint, laptop.endpoint, fcm["endpoint"]]
    )

    # Unsubscribe by endpoint (in the body): only one's own.
    body = {"endpoint": phone.endpoint}
    foreign = await api.request("DELETE", "/v1/push/subscriptions", headers=ben.headers, json=body)
    assert foreign.status_code == 404
    removed = await api.request("DELETE", "/v1/push/subscriptions", headers=ada.headers, json=body)
    assert removed.status_code == 204
    gone = await api.request("DELETE", "/v1/push/subscriptions", headers=ada.headers, json=body)
    assert gone.status_code == 404
    listed = await api.get("/v1/push/subscriptions", headers=ada.headers)
    assert len(listed.json()) == 2


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("2", now) == 2.0
    assert retry_after_seconds("Wed, 25 Nov 2026 10:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 25 Nov 2026 09:00:00 GMT", now) == 0.0  # already past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_allowlist_matches_hosts_and_subdomain_patterns() -> None:
    allowlist = ["fcm.googleapis.com", "*.notify.windows.com"]
    assert host_allowed("fcm.googleapis.com", allowlist)
    assert host_allowed("FCM.googleapis.com.", allowlist)
    assert host_allowed("wns2-db5p.notify.windows.com", allowlist)
    assert not host_allowed("notify.windows.com", allowlist)
    assert not host_allowed("evilnotify.windows.com", allowlist)
    assert not host_allowed("fcm.googleapis.com.evil.example", allowlist)
    assert len(topic_of("task:" + "x" * 500)) == 32


async def test_no_push_follows_a_redirect_or_goes_to_a_host_no_longer_allowed(
    api: httpx.AsyncClient,
    push_service: PushService,
    vapid_keys: tuple[str, str],
    database_url: str,
    log_dir: Path,
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    redirecting, elsewhere = push_service.new_browser(), push_service.new_browser()
    subscription = await subscribe(api, kim, redirecting)
    # A 307 keeps the method and the body: followed, the signed push would land elsewhere.
    push_service.script(redirecting, (307, {"Location": elsewhere.endpoint}))
    dispatcher = start_dispatcher(database_url, log_dir, dispatcher_env(push_service, vapid_keys))
    try:
        await grant(api, ada, kim, 1)
        await eventually(lambda: deliveries(database_url, subscription["id"]) == [("dead", 1)])
        assert push_service.pushes(elsewhere) == []
    finally:
        dispatcher.stop()

    # The allowlist no longer names the push service: nothing is sent there any more.
    narrowed = dispatcher_env(
        push_service,
        vapid_keys,
        APP_PUSH_ENDPOINT_ALLOWLIST=json.dumps(["fcm.googleapis.com"]),
    )
    dispatcher = start_dispatcher(database_url, log_dir, narrowed)
    try:
        sent_before = len(push_service.pushes(redirecting))
        await grant(api, ada, kim, 2)
        await eventually(
            lambda: deliveries(database_url, subscription["id"]) == [("dead", 1), ("dead", 1)]
        )
        assert len(push_service.pushes(redirecting)) == sent_before
        dead = await asyncio.to_thread(
            outbox_cli_json, database_url, "list", "--push", "--status", "dead"
        )
        assert any("endpoint not allowed" in (d["last_error"] or "") for d in dead)
    finally:
        dispatcher.stop()
