"""Sessions that last and end: refresh tokens, log-out, password change, member removal.

Every way a session ends is checked where it matters: the REST API refuses the old tokens, and
live sockets of the ended sessions are told (`session.revoked`) and disconnected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from doubles.socket_clients import SocketRecorder
from tests.harness import ManagedProcess, Member, add_member, connected, log_in, signup

PASSWORD = "correct horse battery"


async def refresh(api: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await api.post("/v1/auth/refresh", json={"refreshToken": refresh_token})


async def assert_refused(api: httpx.AsyncClient, member: Member, code: str) -> None:
    me = await api.get("/v1/me", headers=member.headers)
    assert me.status_code == 401, me.text
    assert me.json()["error"]["code"] == code


async def assert_revoked_and_closed(recorder: SocketRecorder, reason: str) -> None:
    """The socket was told its session ended, then closed by the server."""
    await recorder.wait_until(lambda _: any(n == "session.revoked" for n, _ in recorder.events))
    [(_, envelope)] = [(n, e) for n, e in recorder.events if n == "session.revoked"]
    assert envelope["data"]["reason"] == reason
    async with asyncio.timeout(5):
        await recorder.client.wait()
    assert not recorder.client.connected


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_session(
    api: httpx.AsyncClient,
) -> None:
    parent = await signup(api, "Ada")
    first = await refresh(api, parent.refresh_token)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["refreshToken"] != parent.refresh_token
    assert body["user"]["id"] == parent.id
    renewed = parent.with_tokens(body["accessToken"], body["refreshToken"])
    assert (await api.get("/v1/me", headers=renewed.headers)).status_code == 200

    # The rotated token again: somebody holds a copy, so the whole session ends.
    reused = await refresh(api, parent.refresh_token)
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "refresh_token_reused"
    await assert_refused(api, renewed, "session_revoked")
    after = await refresh(api, renewed.refresh_token)
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"


async def test_an_access_token_is_not_a_refresh_token_nor_the_reverse(
    api: httpx.AsyncClient,
) -> None:
    parent = await signup(api, "Ada")
    as_refresh = await refresh(api, parent.token)
    assert as_refresh.status_code == 401
    assert as_refresh.json()["error"]["code"] == "unauthorized"
    as_access = await api.get("/v1/me", headers={"Authorization": f"Bearer {parent.refresh_token}"})
    assert as_access.status_code == 401
    assert as_access.json()["error"]["code"] == "unauthorized"


async def test_log_out_ends_this_session_only(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    other_device = await log_in(api, parent)
    leaving = await connected(web, parent)
    staying = await connected(web, other_device)

    out = await api.post("/v1/auth/logout", headers=parent.headers)
    assert out.status_code == 204, out.text

    await assert_refused(api, parent, "session_revoked")
    assert (await refresh(api, parent.refresh_token)).status_code == 401
    await assert_revoked_and_closed(leaving, "logout")
    assert (await api.get("/v1/me", headers=other_device.headers)).status_code == 200
    # The other device heard of it (its stream is the user's) but was not disconnected.
    await staying.wait_until(lambda _: any(n == "session.revoked" for n, _ in staying.events))
    await asyncio.sleep(0.5)
    assert staying.client.connected
    await staying.disconnect()


async def test_log_out_everywhere_ends_every_session(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    other_device = await log_in(api, parent)
    sockets = [await connected(web, parent), await connected(web, other_device)]

    out = await api.post("/v1/auth/logout-everywhere", headers=parent.headers)
    assert out.status_code == 204, out.text

    for member in (parent, other_device):
        await assert_refused(api, member, "session_revoked")
        assert (await refresh(api, member.refresh_token)).status_code == 401
    for recorder in sockets:
        await assert_revoked_and_closed(recorder, "logout_everywhere")
    # Logging in again works.
    assert (await log_in(api, parent)).token


async def test_a_password_change_ends_the_other_sessions(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    stolen = await log_in(api, parent)
    thief_socket = await connected(web, stolen)

    wrong = await api.post(
        "/v1/auth/password",
        headers=parent.headers,
        json={"currentPassword": "not it at all", "newPassword": "a new long passphrase"},
    )
    assert wrong.status_code == 403
    assert wrong.json()["error"]["code"] == "wrong_password"

    changed = await api.post(
        "/v1/auth/password",
        headers=parent.headers,
        json={"currentPassword": PASSWORD, "newPassword": "a new long passphrase"},
    )
    assert changed.status_code == 204, changed.text

    assert (await api.get("/v1/me", headers=parent.headers)).status_code == 200
    await assert_refused(api, stolen, "session_revoked")
    assert (await refresh(api, stolen.refresh_token)).status_code == 401
    await assert_revoked_and_closed(thief_socket, "password_changed")
    old = await api.post("/v1/auth/login", json={"email": parent.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await api.post(
        "/v1/auth/login", json={"email": parent.email, "password": "a new long passphrase"}
    )
    assert new.status_code == 200


async def test_removing_a_member_locks_them_out_and_tells_the_family(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    sibling = await add_member(api, parent, "Lou", "child")
    task = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": "Dishes", "assignedTo": [child.id, sibling.id]},
    )
    assert task.status_code == 201, task.text
    child_socket = await connected(web, child)
    sibling_socket = await connected(web, sibling)

    members_url = f"/v1/families/{parent.family_id}/members"
    removed = await api.delete(f"{members_url}/{child.id}", headers=parent.headers)
    assert removed.status_code == 204, removed.text

    await assert_refused(api, child, "unauthorized")
    assert (await refresh(api, child.refresh_token)).status_code == 401
    await assert_revoked_and_closed(child_socket, "member_removed")
    await sibling_socket.wait_until(lambda _: bool(sibling_socket.of_type("member.removed")))
    [notice] = sibling_socket.of_type("member.removed")
    assert notice["data"] == {"userId": child.id, "familyId": parent.family_id}
    listed = await api.get(members_url, headers=parent.headers)
    assert child.id not in {m["id"] for m in listed.json()}
    # The task the child shared stays, now without them.
    [kept] = (
        await api.get(f"/v1/families/{parent.family_id}/tasks", headers=parent.headers)
    ).json()
    assert kept["assignedTo"] == [sibling.id]
    await sibling_socket.disconnect()


async def test_member_removal_is_for_parents_within_their_family_and_keeps_a_parent(
    api: httpx.AsyncClient,
) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    stranger = await signup(api, "Bob")
    members_url = f"/v1/families/{parent.family_id}/members"

    cases: list[tuple[Member, str, int, str]] = [
        (child, f"{members_url}/{parent.id}", 403, "forbidden"),
        # Another family's member and another family's URL look the same as a missing one.
        (parent, f"{members_url}/{stranger.id}", 404, "not_found"),
        (stranger, f"{members_url}/{child.id}", 404, "not_found"),
        (parent, f"{members_url}/not-a-uuid", 422, "validation_error"),
        # The last parent cannot leave the children alone.
        (parent, f"{members_url}/{parent.id}", 409, "last_parent"),
    ]
    for actor, url, status, code in cases:
        response = await api.delete(url, headers=actor.headers)
        assert response.status_code == status, (url, response.text)
        error: dict[str, Any] = response.json()["error"]
        assert error["code"] == code, (url, error)

    # With a second parent, a parent may leave.
    second = await add_member(api, parent, "Cy", "parent")
    assert (
        await api.delete(f"{members_url}/{parent.id}", headers=second.headers)
    ).status_code == 204
    await assert_refused(api, parent, "unauthorized")
