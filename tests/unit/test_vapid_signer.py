"""VAPID headers (app/push/vapid.py): signed once per push service, not once per push."""

from __future__ import annotations

import jwt

from app.push.vapid import TOKEN_LIFETIME_SECONDS, VapidSigner
from app.vapid_keys import generate_key_pair


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def token_of(headers: dict[str, str]) -> str:
    # "vapid t=<jwt>, k=<public key>"
    return headers["Authorization"].split("t=", 1)[1].split(",", 1)[0]


def claims_of(headers: dict[str, str]) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token_of(headers), options={"verify_signature": False})
    return claims


def signer(clock: Clock) -> VapidSigner:
    private_key, _ = generate_key_pair()
    return VapidSigner(private_key, "mailto:ops@family.test", clock=clock)


def test_pushes_to_one_service_share_one_signed_token() -> None:
    vapid = signer(Clock())
    first = vapid.headers_for("https://push.example.com/send/a")
    second = vapid.headers_for("https://push.example.com/send/b")
    assert token_of(first) == token_of(second)
    assert claims_of(first)["aud"] == "https://push.example.com"


def test_each_service_gets_a_token_for_its_own_origin() -> None:
    vapid = signer(Clock())
    one = vapid.headers_for("https://push.example.com/send/a")
    other = vapid.headers_for("https://updates.push.services.mozilla.com:443/wpush/v2/x")
    assert token_of(one) != token_of(other)
    assert claims_of(other)["aud"] == "https://updates.push.services.mozilla.com:443"


def test_a_token_is_signed_again_before_half_its_lifetime_is_gone() -> None:
    clock = Clock()
    vapid = signer(clock)
    endpoint = "https://push.example.com/send/a"
    first = vapid.headers_for(endpoint)
    assert claims_of(first)["exp"] == int(clock.now) + TOKEN_LIFETIME_SECONDS
    clock.now += TOKEN_LIFETIME_SECONDS / 2 - 1
    assert token_of(vapid.headers_for(endpoint)) == token_of(first)
    clock.now += 2
    renewed = vapid.headers_for(endpoint)
    assert token_of(renewed) != token_of(first)
    assert claims_of(renewed)["exp"] == int(clock.now) + TOKEN_LIFETIME_SECONDS


def test_callers_cannot_change_the_cached_headers() -> None:
    vapid = signer(Clock())
    headers = vapid.headers_for("https://push.example.com/send/a")
    headers["Urgency"] = "high"
    assert "Urgency" not in vapid.headers_for("https://push.example.com/send/a")
