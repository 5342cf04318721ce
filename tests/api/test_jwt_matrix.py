"""Every token that must not be trusted is refused, on REST and at socket connect alike.

Each case is sent to `GET /v1/me` (401 with the error code) and to a real Socket.IO connect
over TCP (refused with the same code as the message), so the two doors cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import socketio
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.harness import Member, add_member, connected, log_in, run_sql, signup


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def forged(secret: str, member: Member, algorithm: str = "HS256", **overrides: Any) -> str:
    """A token like ``member``'s (same session) with ``overrides``; None drops a claim."""
    claims = {**claims_of(member.token), **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, secret, algorithm=algorithm)


def unsigned(member: Member) -> str:
    """``alg: none``: the claims of a real token and no signature at all."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims_of(member.token))}."


async def socket_refusal(web: str, token: str | None) -> Any:
    client = socketio.AsyncClient(reconnection=False)
    refusals: list[Any] = []
    client.on("connect_error", refusals.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            web, auth={"token": token} if token else None, transports=["websocket"]
        )
    return refusals


async def test_untrusted_tokens_are_refused_with_their_reason(
    api: httpx.AsyncClient, web: str, jwt_secret: str, database_url: str
) -> None:
    parent = await signup(api, "Ada")
    stranger = await signup(api, "Bob")
    deleted = await add_member(api, parent, "Kim", "child")
    await run_sql(database_url, "DELETE FROM users WHERE id = %s", deleted.id)
    removed = await add_member(api, parent, "Lou", "child")
    gone = await api.delete(
        f"/v1/families/{parent.family_id}/members/{removed.id}", headers=parent.headers
    )
    assert gone.status_code == 204
    logged_out = await log_in(api, parent)
    assert (await api.post("/v1/auth/logout", headers=logged_out.headers)).status_code == 204

    now = datetime.now(UTC)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases: dict[str, tuple[str | None, str]] = {
        "no token": (None, "unauthorized"),
        "garbage": ("not-a-jwt", "unauthorized"),
        "alg none": (unsigned(parent), "unauthorized"),
        "another key": (forged("another-secret" * 4, parent), "unauthorized"),
        "another algorithm (HS384, our secret)": (
            forged(jwt_secret, parent, algorithm="HS384"),
            "unauthorized",
        ),
        "RS256 instead of HS256": (forged(rsa_key, parent, algorithm="RS256"), "unauthorized"),  # type: ignore[arg-type]
        "expired": (
            forged(jwt_secret, parent, iat=now - timedelta(hours=2), exp=now - timedelta(hours=1)),
            "token_expired",
        ),
        "not yet valid": (forged(jwt_secret, parent, nbf=now + timedelta(hours=1)), "unauthorized"),
        "wrong audience": (forged(jwt_secret, parent, aud="elsewhere"), "unauthorized"),
        "wrong issuer": (forged(jwt_secret, parent, iss="someone-else"), "unauthorized"),
        "no subject": (forged(jwt_secret, parent, sub=None), "unauthorized"),
        "no session": (forged(jwt_secret, parent, sid=None), "unauthorized"),
        "no expiry": (forged(jwt_secret, parent, exp=None), "unauthorized"),
        "unknown subject": (forged(jwt_secret, parent, sub=str(uuid.uuid4())), "unauthorized"),
        "unknown session": (forged(jwt_secret, parent, sid=str(uuid.uuid4())), "unauthorized"),
        "another user's session": (
            forged(jwt_secret, parent, sid=claims_of(stranger.token)["sid"]),
            "unauthorized",
        ),
        "another family": (forged(jwt_secret, parent, fam=stranger.family_id), "unauthorized"),
        "a deleted user's": (deleted.token, "unauthorized"),
        "a removed member's": (removed.token, "unauthorized"),
        "a logged-out session's": (logged_out.token, "session_revoked"),
        "a refresh token": (parent.refresh_token, "unauthorized"),
    }
    for label, (token, code) in cases.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await api.get("/v1/me", headers=headers)
        assert response.status_code == 401, (label, response.text)
        assert response.json()["error"]["code"] == code, label
        assert await socket_refusal(web, token) == [{"message": code}], label

    # The real token passes both doors.
    assert (await api.get("/v1/me", headers=parent.headers)).status_code == 200
    recorder = await connected(web, parent)
    assert recorder.client.connected
    await recorder.disconnect()


async def test_untrusted_refresh_tokens_are_refused_with_their_reason(
    api: httpx.AsyncClient, jwt_secret: str
) -> None:
    parent = await signup(api, "Ada")
    logged_out = await log_in(api, parent)
    assert (await api.post("/v1/auth/logout", headers=logged_out.headers)).status_code == 204
    rotated = await log_in(api, parent)
    assert (
        await api.post("/v1/auth/refresh", json={"refreshToken": rotated.refresh_token})
    ).status_code == 200

    real = claims_of(parent.refresh_token)
    now = datetime.now(UTC)

    def refresh_like(**overrides: Any) -> str:
        claims = {k: v for k, v in {**real, **overrides}.items() if v is not None}
        return jwt.encode(claims, jwt_secret, algorithm="HS256")

    cases: dict[str, tuple[str, str]] = {
        "garbage": ("not-a-jwt", "unauthorized"),
        "an access token": (parent.token, "unauthorized"),
        "another key": (jwt.encode(real, "another-secret" * 4, algorithm="HS256"), "unauthorized"),
        "expired": (
            refresh_like(iat=now - timedelta(days=40), exp=now - timedelta(days=1)),
            "token_expired",
        ),
        "a generation not yet issued": (refresh_like(gen=real["gen"] + 5), "unauthorized"),
        "a generation that is not a number": (refresh_like(gen="0"), "unauthorized"),
        "unknown session": (refresh_like(sid=str(uuid.uuid4())), "unauthorized"),
        "a logged-out session's": (logged_out.refresh_token, "session_revoked"),
        # Spent once already: the whole session ends (and the next use says so).
        "a rotated one": (rotated.refresh_token, "refresh_token_reused"),
        "the rotated one again": (rotated.refresh_token, "session_revoked"),
    }
    for label, (token, code) in cases.items():
        response = await api.post("/v1/auth/refresh", json={"refreshToken": token})
        assert response.status_code == 401, (label, response.text)
        assert response.json()["error"]["code"] == code, label
    # None of it touched the real session.
    assert (
        await api.post("/v1/auth/refresh", json={"refreshToken": parent.refresh_token})
    ).status_code == 200
