"""Input that the database cannot store, or could not read back, is a 4xx, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.harness import signup

NUL = "a\u0000b"


def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}


async def test_nul_characters_are_refused_everywhere(api: httpx.AsyncClient) -> None:
    refused = await api.post(
        "/v1/auth/signup",
        json={
            "familyName": NUL,
            "displayName": "Ada",
            "email": "ada-nul@example.com",
            "password": "correct horse battery",
        },
    )
    assert_refused(refused)
    assert "NUL" in refused.text
    parent = await signup(api, "Ada")
    task = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": NUL, "assignedTo": [parent.id]},
    )
    assert_refused(task)
    chat = await api.post(
        f"/v1/families/{parent.family_id}/chats", headers=parent.headers, json={"name": "Us"}
    )
    assert chat.status_code == 201, chat.text
    message = await api.post(
        f"/v1/chats/{chat.json()['id']}/messages", headers=parent.headers, json={"body": NUL}
    )
    assert_refused(message)
    unsubscribe = await api.request(
        "DELETE", "/v1/push/subscriptions", headers=parent.headers, json={"endpoint": NUL}
    )
    assert_refused(unsubscribe)
    # Nothing half-stored: the family's lists still read back.
    tasks = await api.get(f"/v1/families/{parent.family_id}/tasks", headers=parent.headers)
    assert (tasks.status_code, tasks.json()) == (200, [])


@pytest.mark.parametrize(
    "due_at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00Z"]
)
async def test_due_dates_that_cannot_be_read_back_are_refused(
    api: httpx.AsyncClient, due_at: str
) -> None:
    parent = await signup(api, "Ada")
    created = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": "Dishes", "assignedTo": [parent.id], "dueAt": due_at},
    )
    assert_refused(created)
    tasks = await api.get(f"/v1/families/{parent.family_id}/tasks", headers=parent.headers)
    assert (tasks.status_code, tasks.json()) == (200, [])


async def test_a_far_future_push_expiry_is_refused(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    response = await api.post(
        "/v1/push/subscriptions",
        headers=parent.headers,
        json={
            "endpoint": "https://fcm.googleapis.com/fcm/send/abc",
            "expirationTime": 1e17,
            "keys": {"p256dh": "x" * 87, "auth": "y" * 22},
        },
    )
    assert_refused(response)
    assert "expirationTime" in response.text


async def test_oversized_and_absurdly_nested_bodies_are_refused(api: httpx.AsyncClient) -> None:
    big = b'{"email": "' + b"a" * (5 * 1024 * 1024) + b'"}'
    answer = await api.post(
        "/v1/auth/login", content=big, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(80):
            yield b" " * 65536

    answer = await api.post(
        "/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    deep = b"[" * 10_000 + b"]" * 10_000
    answer = await api.post(
        "/v1/auth/login", content=deep, headers={"Content-Type": "application/json"}
    )
    assert_refused(answer)
