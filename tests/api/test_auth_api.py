"""Sign-up, log-in, members: the REST contract and its errors."""

from __future__ import annotations

import httpx

from tests.harness import add_member, signup


async def test_signup_login_and_me(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    me = await api.get("/v1/me", headers=parent.headers)
    assert me.status_code == 200
    assert me.json() == {
        "id": parent.id,
        "familyId": parent.family_id,
        "email": parent.email,
        "displayName": "Ada",
        "role": "parent",
    }
    login = await api.post(
        "/v1/auth/login", json={"email": parent.email.upper(), "password": "correct horse battery"}
    )
    assert login.status_code == 200
    assert login.json()["user"]["id"] == parent.id


async def test_members_are_added_by_parents_only(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kid", "child")
    members = await api.get(f"/v1/families/{parent.family_id}/members", headers=child.headers)
    assert members.status_code == 200
    assert {m["id"]: m["role"] for m in members.json()} == {parent.id: "parent", child.id: "child"}

    refused = await api.post(
        f"/v1/families/{parent.family_id}/members",
        headers=child.headers,
        json={
            "displayName": "X",
            "email": "x@example.com",
            "password": "12345678",
            "role": "child",
        },
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"


async def test_other_families_are_invisible(api: httpx.AsyncClient) -> None:
    ours, theirs = await signup(api, "Ada"), await signup(api, "Bob")
    for response in (
        await api.get(f"/v1/families/{theirs.family_id}/members", headers=ours.headers),
        await api.post(
            f"/v1/families/{theirs.family_id}/members",
            headers=ours.headers,
            json={
                "displayName": "X",
                "email": "x@example.com",
                "password": "12345678",
                "role": "parent",
            },
        ),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


async def test_errors_are_json_4xx(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    wrong_password = await api.post(
        "/v1/auth/login", json={"email": parent.email, "password": "nope"}
    )
    assert wrong_password.status_code == 401
    assert wrong_password.json()["error"]["code"] == "unauthorized"

    duplicate = await api.post(
        "/v1/auth/signup",
        json={
            "familyName": "F",
            "displayName": "D",
            "email": parent.email,
            "password": "correct horse battery",
        },
    )
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["code"] == "already_exists"

    invalid = await api.post("/v1/auth/signup", json={"familyName": "", "email": "not-an-email"})
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "validation_error"

    not_json = await api.post(
        "/v1/auth/login", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422

    for headers in ({}, {"Authorization": "Bearer garbage"}):
        response = await api.get("/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    bad_uuid = await api.get("/v1/families/not-a-uuid/members", headers=parent.headers)
    assert bad_uuid.status_code == 422
