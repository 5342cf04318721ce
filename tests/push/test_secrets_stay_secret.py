"""No secret ever reaches a log line or an error body.

A run through everything that handles secrets — sign-up, failed and good log-ins, refresh and
its reuse, a password change, bad input carrying a password, push subscription and a push
really sent and decrypted — with the web process logging at debug (access log included) and
the dispatcher at DEBUG; then every log line and every response body and header is searched
for the JWT secret, every token issued, every password, the VAPID private key and the push
auth secret.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx

from doubles.push_service import PushService
from doubles.socket_clients import SocketRecorder
from tests.harness import TEST_JWT_SECRET, ManagedProcess, Member, web_process
from tests.push.support import ALLOWLIST, VAPID_SUBJECT, grant, subscribe

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
WRONG_PASSWORD = "hunter2 wrong guess"


async def test_no_secret_reaches_a_log_or_an_error_body(
    database_url: str,
    log_dir: Path,
    vapid_keys: tuple[str, str],
    push_service: PushService,
    dispatcher: ManagedProcess,
) -> None:
    proc, base_url = await asyncio.to_thread(
        web_process,
        database_url,
        log_dir,
        log_level="debug",
        APP_VAPID_PUBLIC_KEY=vapid_keys[1],
        APP_VAPID_SUBJECT=VAPID_SUBJECT,
        APP_PUSH_ENDPOINT_ALLOWLIST=ALLOWLIST,
    )
    responses: list[httpx.Response] = []
    secrets = {"the JWT secret": TEST_JWT_SECRET, "the VAPID private key": vapid_keys[0]}
    for label, password in (
        ("password", PASSWORD),
        ("new", NEW_PASSWORD),
        ("wrong", WRONG_PASSWORD),
    ):
        secrets[f"the {label} password"] = password

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        responses.append(response)

    try:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=10, event_hooks={"response": [keep]}
        ) as api:
            signup = await api.post(
                "/v1/auth/signup",
                json={
                    "familyName": "Secret keepers",
                    "displayName": "Ada",
                    "email": "ada-secrets@example.com",
                    "password": PASSWORD,
                },
            )
            assert signup.status_code == 201
            ada = signup.json()
            headers = {"Authorization": f"Bearer {ada['accessToken']}"}
            family = ada["user"]["familyId"]
            kid = await api.post(
                f"/v1/families/{family}/members",
                headers=headers,
                json={
                    "displayName": "Kim",
                    "email": "kim-secrets@example.com",
                    "password": PASSWORD,
                    "role": "child",
                },
            )
            assert kid.status_code == 201
            # Failures of every kind, each carrying a secret in its request.
            for body in (
                {"email": "ada-secrets@example.com", "password": WRONG_PASSWORD},
                {"email": "nobody@example.com", "password": WRONG_PASSWORD},
                {"email": "not an e-mail", "password": WRONG_PASSWORD},
                {"email": "ada-secrets@example.com", "password": WRONG_PASSWORD, "x": 1},
            ):
                assert (await api.post("/v1/auth/login", json=body)).status_code in (401, 422)
            short = await api.post(
                "/v1/auth/signup",
                json={"familyName": "F", "displayName": "D", "email": "x@y.z", "password": "short"},
            )
            assert short.status_code == 422
            kim_login = await api.post(
                "/v1/auth/login", json={"email": "kim-secrets@example.com", "password": PASSWORD}
            )
            kim = kim_login.json()
            kim_headers = {"Authorization": f"Bearer {kim['accessToken']}"}
            refreshed = await api.post(
                "/v1/auth/refresh", json={"refreshToken": ada["refreshToken"]}
            )
            assert refreshed.status_code == 200
            # The spent token again: the session ends, and the error says so without echoing.
            reused = await api.post("/v1/auth/refresh", json={"refreshToken": ada["refreshToken"]})
            assert reused.status_code == 401
            stale = await api.get(
                "/v1/me", headers={"Authorization": f"Bearer {refreshed.json()['accessToken']}"}
            )
            assert stale.status_code == 401
            again = await api.post(
                "/v1/auth/login", json={"email": "ada-secrets@example.com", "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {again.json()['accessToken']}"}
            for current in (WRONG_PASSWORD, PASSWORD):
                await api.post(
                    "/v1/auth/password",
                    headers=headers,
                    json={"currentPassword": current, "newPassword": NEW_PASSWORD},
                )
            tokens = [
                ada["accessToken"],
                ada["refreshToken"],
                kim["accessToken"],
                kim["refreshToken"],
                refreshed.json()["accessToken"],
                refreshed.json()["refreshToken"],
                again.json()["accessToken"],
                again.json()["refreshToken"],
            ]
            for n, token in enumerate(tokens):
                secrets[f"token {n}"] = token

            # A push subscription, and a push the loopback service decrypts.
            phone = push_service.new_browser()
            secrets["the push auth secret"] = (
                base64.urlsafe_b64encode(phone.auth_secret).rstrip(b"=").decode()
            )
            kim_member = _member(kim, family)
            await subscribe(api, kim_member, phone)
            socket = SocketRecorder(base_url, again.json()["accessToken"])
            await socket.connect()
            await grant(api, _member(again.json(), family), kim_member, 3)
            await push_service.wait_until(lambda: len(push_service.pushes(phone)) == 1)
            await socket.disconnect()
            me = await api.get("/v1/me", headers=kim_headers)
            assert me.status_code == 200
    finally:
        proc.stop()
    dispatcher.stop()

    logs = read_logs(log_dir)
    assert any("GET /v1/me" in text for text in logs.values()), "the access log was not on"
    leaks = [
        (what, where)
        for what, secret in secrets.items()
        for where, text in [
            *logs.items(),
            *(
                (f"{r.request.method} {r.request.url.path} -> {r.status_code}", _shown(r))
                for r in responses
                # Token responses are where tokens are meant to be.
                if r.request.url.path
                not in ("/v1/auth/signup", "/v1/auth/login", "/v1/auth/refresh")
                or r.status_code >= 400
            ),
        ]
        if secret in text
    ]
    assert leaks == []


def read_logs(log_dir: Path) -> dict[str, str]:
    return {path.name: path.read_text(errors="replace") for path in log_dir.glob("*.log")}


def _shown(response: httpx.Response) -> str:
    """All a client or a proxy log sees of a response: its headers and body."""
    return f"{response.headers}\n{response.text}"


def _member(token_response: dict[str, Any], family_id: str) -> Member:
    user = token_response["user"]
    return Member(user["id"], family_id, user["email"], token_response["accessToken"], user["role"])
