"""Who may name a push endpoint: unsubscribing by a body (not the URL), and taking one over."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from bench.push_service import Browser, PushService
from tests.harness import add_member, signup
from tests.push.support import subscribe, subscription_exists


def stored(database_url: str, endpoint: str) -> tuple[Any, ...] | None:
    """The subscription row of an endpoint: its user, keys and last update."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT id, user_id, p256dh, auth, updated_at FROM push_subscriptions"
            " WHERE endpoint = %s",
            (endpoint,),
        ).fetchone()


async def test_unsubscribe_takes_the_endpoint_in_the_body_not_the_url(
    api: httpx.AsyncClient, push_service: PushService, database_url: str
) -> None:
    """The endpoint is a capability URL: it must not travel in a query string (access logs)."""
    ada = await signup(api, "Ada")
    ben = await add_member(api, ada, "Ben", "parent")
    phone = push_service.new_browser()
    created = await subscribe(api, ada, phone)

    in_url = await api.delete(
        "/v1/push/subscriptions", headers=ada.headers, params={"endpoint": phone.endpoint}
    )
    assert in_url.status_code == 422, in_url.text
    assert in_url.json()["error"]["code"] == "validation_error"
    assert subscription_exists(database_url, created["id"])

    for bad in (
        {"endpoint": "a\u0000b"},
        {"endpoint": ""},
        {"endpoint": "x" * 2049},
        {"endpoint": phone.endpoint, "extra": True},
        {},
        [phone.endpoint],
    ):
        refused = await api.request(
            "DELETE", "/v1/push/subscriptions", headers=ada.headers, json=bad
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "validation_error"
    assert subscription_exists(database_url, created["id"])

    body = {"endpoint": phone.endpoint}
    foreign = await api.request("DELETE", "/v1/push/subscriptions", headers=ben.headers, json=body)
    assert foreign.status_code == 404, foreign.text
    anonymous = await api.request("DELETE", "/v1/push/subscriptions", json=body)
    assert anonymous.status_code == 401, anonymous.text
    removed = await api.request("DELETE", "/v1/push/subscriptions", headers=ada.headers, json=body)
    assert removed.status_code == 204, removed.text
    assert not subscription_exists(database_url, created["id"])
    again = await api.request("DELETE", "/v1/push/subscriptions", headers=ada.headers, json=body)
    assert again.status_code == 404, again.text


async def test_an_endpoint_held_by_another_user_moves_only_with_its_keys(
    api: httpx.AsyncClient, push_service: PushService, database_url: str
) -> None:
    """Knowing an endpoint URL is not enough to take it: the browser's keys are (its auth secret
    never leaves it). A shared tablet moves to whoever logs in; a user may rotate their keys."""
    ada = await signup(api, "Ada")
    ben = await add_member(api, ada, "Ben", "parent")
    eve = await signup(api, "Eve")  # another family
    tablet = push_service.new_browser()
    created = await subscribe(api, ada, tablet)
    before = stored(database_url, tablet.endpoint)
    assert before is not None
    assert str(before[1]) == ada.id

    # Someone who learnt the URL, with keys of their own, or with only half of the tablet's.
    impostor = Browser(token=tablet.token, endpoint=tablet.endpoint).subscription()
    real = tablet.subscription()
    half_keys = [
        {**real, "keys": {"p256dh": real["keys"]["p256dh"], "auth": impostor["keys"]["auth"]}},
        {**real, "keys": {"p256dh": impostor["keys"]["p256dh"], "auth": real["keys"]["auth"]}},
    ]
    for member, subscription in [(eve, impostor), (ben, impostor), *((ben, h) for h in half_keys)]:
        taken = await api.post("/v1/push/subscriptions", headers=member.headers, json=subscription)
        assert taken.status_code == 409, (member.email, taken.text)
        error = taken.json()["error"]
        assert error["code"] == "endpoint_taken", error
        assert set(error) == {"code", "message", "details"}
    assert stored(database_url, tablet.endpoint) == before  # nothing changed, not even the time
    for member in (ben, eve):
        listed = await api.get("/v1/push/subscriptions", headers=member.headers)
        assert listed.json() == []

    # The shared tablet: Ben logs in on the same browser, which sends the same subscription.
    moved = await api.post("/v1/push/subscriptions", headers=ben.headers, json=real)
    assert moved.status_code == 200, moved.text
    assert moved.json()["id"] == created["id"]
    after = stored(database_url, tablet.endpoint)
    assert after is not None
    assert str(after[1]) == ben.id
    listed = await api.get("/v1/push/subscriptions", headers=ada.headers)
    assert listed.json() == []

    # Key rotation by the user holding the endpoint stays allowed.
    rotated = Browser(token=tablet.token, endpoint=tablet.endpoint).subscription()
    again = await api.post("/v1/push/subscriptions", headers=ben.headers, json=rotated)
    assert again.status_code == 200, again.text
    after = stored(database_url, tablet.endpoint)
    assert after is not None
    assert (str(after[1]), after[2], after[3]) == (
        ben.id,
        rotated["keys"]["p256dh"],
        rotated["keys"]["auth"],
    )
    # And the old keys no longer move it away from Ben.
    back = await api.post("/v1/push/subscriptions", headers=ada.headers, json=real)
    assert back.status_code == 409, back.text
