"""A socket outlives its short access tokens: renewed in place, or reconnected where it stood.

The web process here issues 3-second access tokens. A client that refreshes over REST and
hands the new token to its socket (`auth.renew`) stays connected; one that lets the token
expire is disconnected, and reconnecting with a refreshed token and its position loses no
event of its stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from doubles.socket_clients import StreamFollower
from tests.harness import ManagedProcess, Member, add_member, signup, web_process

TOKEN_SECONDS = 3


@pytest.fixture
async def short_lived(
    database_url: str, log_dir: Path, start_dispatcher: Callable[..., ManagedProcess]
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    proc, base_url = await asyncio.to_thread(
        web_process, database_url, log_dir, APP_JWT_TTL_SECONDS=str(TOKEN_SECONDS)
    )
    start_dispatcher()
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as api:
            yield base_url, api
    finally:
        proc.stop()


async def refreshed(api: httpx.AsyncClient, member: Member) -> Member:
    response = await api.post("/v1/auth/refresh", json={"refreshToken": member.refresh_token})
    assert response.status_code == 200, response.text
    return member.with_tokens(response.json()["accessToken"], response.json()["refreshToken"])


async def assign_tasks(api: httpx.AsyncClient, parent: Member, child: Member, count: int) -> None:
    for n in range(count):
        response = await api.post(
            f"/v1/families/{parent.family_id}/tasks",
            headers=parent.headers,
            json={"title": f"Task {n}", "assignedTo": [child.id]},
        )
        assert response.status_code == 201, response.text


async def test_a_renewed_socket_stays_connected_past_its_first_token(
    short_lived: tuple[str, httpx.AsyncClient],
) -> None:
    base_url, api = short_lived
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    follower = StreamFollower(base_url, child.token)
    await follower.connect()

    for _ in range(3):  # three token lifetimes, renewed before each ends
        await asyncio.sleep(TOKEN_SECONDS / 2)
        parent = await refreshed(api, parent)
        child = await refreshed(api, child)
        assert await follower.client.call("auth.renew", {"token": child.token}) == {"ok": True}
        await assign_tasks(api, parent, child, 2)

    await follower.wait_until(lambda events: len(events) >= 6)
    assert follower.client.connected
    assert not [name for name, _ in follower.received if name == "session.expired"]
    assert follower.position == 6
    assert (follower.duplicates, follower.out_of_order) == (0, 0)
    await follower.disconnect()


async def test_an_expired_socket_reconnects_with_a_refreshed_token_and_loses_nothing(
    short_lived: tuple[str, httpx.AsyncClient],
) -> None:
    base_url, api = short_lived
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    follower = StreamFollower(base_url, child.token)
    await follower.connect()
    await assign_tasks(api, parent, child, 2)
    await follower.wait_until(lambda events: len(events) >= 2)

    expired = ("session.expired", {"reason": "token_expired"})
    await follower.wait_until(lambda _: expired in follower.received, TOKEN_SECONDS + 5)
    async with asyncio.timeout(5):
        await follower.client.wait()
    # Events keep coming while the child is away.
    parent = await refreshed(api, parent)
    await assign_tasks(api, parent, child, 3)

    child = await refreshed(api, child)
    follower.token = child.token
    refetches = follower.refetches  # a first connect, with no position, is one
    await follower.reconnect()
    await follower.wait_until(lambda events: len(events) >= 5 and len(follower.syncs) == 2)
    assert follower.position == 5
    assert follower.syncs[-1]["recovered"] is True
    assert follower.refetches == refetches
    assert (follower.duplicates, follower.out_of_order) == (0, 0)
    await follower.disconnect()


async def test_a_socket_takes_only_a_live_token_of_its_own_session(
    short_lived: tuple[str, httpx.AsyncClient],
) -> None:
    base_url, api = short_lived
    parent = await signup(api, "Ada")
    other_device = await api.post(
        "/v1/auth/login", json={"email": parent.email, "password": "correct horse battery"}
    )
    stranger = await signup(api, "Bob")
    follower = StreamFollower(base_url, parent.token)
    await follower.connect()

    renew = follower.client.call
    another_session = other_device.json()["accessToken"]
    for token, code in (
        ("not-a-jwt", "unauthorized"),
        (stranger.token, "unauthorized"),
        (another_session, "unauthorized"),
        (parent.refresh_token, "unauthorized"),
    ):
        answer = await renew("auth.renew", {"token": token})
        assert answer == {
            "ok": False,
            "error": {"code": code, "message": answer["error"]["message"]},
        }

    # A refreshed token of its own session is taken.
    mine = await refreshed(api, parent)
    assert await renew("auth.renew", {"token": mine.token}) == {"ok": True}
    await follower.disconnect()
