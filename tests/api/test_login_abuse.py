"""Login floods: throttled per address and per account, never a 5xx, never stalling others."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.harness import signup, web_process

PASSWORD = "correct horse battery"  # the one tests.harness gives every member
# The throttle's window: long enough to outlast the flood on a busy machine (its first log-ins
# hash passwords), so the flooded address is still refused right after it.
WINDOW_SECONDS = 10


def from_address(address: str) -> dict[str, str]:
    # uvicorn trusts X-Forwarded-For from loopback (its --proxy-headers default), as from a
    # load balancer in front of it: the throttle sees this as the client's address.
    return {"X-Forwarded-For": address}


async def test_a_login_flood_is_throttled_without_stalling_anyone(
    database_url: str, log_dir: Path
) -> None:
    web, base_url = await asyncio.to_thread(
        web_process, database_url, log_dir, APP_LOGIN_WINDOW_SECONDS=str(WINDOW_SECONDS)
    )
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            victim = await signup(api, "Ada")
            bystander = await signup(api, "Bob")
            attacker = from_address("203.0.113.7")
            wrong = {"email": victim.email, "password": "not the password"}

            me_statuses: list[int] = []
            flooding = True

            async def keep_asking_me() -> None:
                while flooding:
                    me_statuses.append(
                        (await api.get("/v1/me", headers=bystander.headers)).status_code
                    )
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(keep_asking_me())
            answers = await asyncio.gather(
                *(api.post("/v1/auth/login", json=wrong, headers=attacker) for _ in range(60))
            )
            flooding = False
            await watcher

            statuses = [answer.status_code for answer in answers]
            assert set(statuses) <= {401, 429}, statuses
            assert statuses.count(401) <= 20
            throttled = [answer for answer in answers if answer.status_code == 429]
            assert len(throttled) >= 40
            for answer in throttled:
                assert 1 <= int(answer.headers["Retry-After"]) <= WINDOW_SECONDS
                assert answer.json()["error"]["code"] == "too_many_requests"
            # Others are served throughout (how fast: bench/login_flood.py).
            assert me_statuses
            assert set(me_statuses) == {200}, me_statuses

            # The real user, elsewhere, is not locked out; from the flooded address, only until
            # the window ends.
            right = {"email": victim.email, "password": PASSWORD}
            elsewhere = await api.post(
                "/v1/auth/login", json=right, headers=from_address("198.51.100.4")
            )
            assert elsewhere.status_code == 200, elsewhere.text
            there = await api.post("/v1/auth/login", json=right, headers=attacker)
            assert there.status_code == 429
            await asyncio.sleep(int(there.headers["Retry-After"]) + 0.2)
            later = await api.post("/v1/auth/login", json=right, headers=attacker)
            assert later.status_code == 200, later.text
    finally:
        web.stop()


async def test_only_failures_count_against_an_address(database_url: str, log_dir: Path) -> None:
    # A school or an office shares one address: its members' good logins never add up.
    web, base_url = await asyncio.to_thread(
        web_process, database_url, log_dir, APP_LOGIN_ATTEMPTS_PER_ADDRESS="5"
    )
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            member = await signup(api, "Ada")
            right = {"email": member.email, "password": PASSWORD}
            office = from_address("192.0.2.10")
            for _ in range(12):
                answer = await api.post("/v1/auth/login", json=right, headers=office)
                assert answer.status_code == 200, answer.text
            wrong = {"email": member.email, "password": "nope"}
            failures = [
                (await api.post("/v1/auth/login", json=wrong, headers=office)).status_code
                for _ in range(7)
            ]
            assert failures == [401] * 5 + [429] * 2
    finally:
        web.stop()


async def test_sign_up_cannot_probe_e_mails_faster_than_log_in(api: httpx.AsyncClient) -> None:
    """Without an e-mail channel a taken address cannot be hidden at sign-up (docs/security.md):
    probing addresses there counts against the log-in limits, the same answer for any taken one.
    """
    victim = await signup(api, "Ada")
    prober = from_address("203.0.113.9")
    answers = []
    for n in range(12):
        answers.append(
            await api.post(
                "/v1/auth/signup",
                headers=prober,
                json={
                    "familyName": "Probe",
                    "displayName": "Probe",
                    "email": victim.email.upper() if n % 2 else victim.email,
                    "password": PASSWORD,
                },
            )
        )
    statuses = [answer.status_code for answer in answers]
    # 10 attempts per account from one address, as for log-in; then 429 with Retry-After.
    assert statuses == [409] * 10 + [429] * 2, statuses
    assert {answer.json()["error"]["message"] for answer in answers[:10]} == {
        "sign-up failed: if this is your address, log in instead"
    }
    assert int(answers[-1].headers["Retry-After"]) >= 1
    # Someone else's sign-up from elsewhere is not affected.
    assert (await signup(api, "Bob")).token
