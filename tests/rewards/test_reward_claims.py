"""Rewards and claims end to end: karma reserved, then spent or refunded exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import psycopg

from doubles.socket_clients import SocketRecorder
from tests.events import data_of, domain_events, wait_for
from tests.harness import (
    ManagedProcess,
    Member,
    add_member,
    connected,
    create_reward,
    grant,
    seed_household,
    signup,
)


def names(recorder: SocketRecorder) -> list[str]:
    return [name for name, _ in domain_events(recorder.events)]


async def claim(api: httpx.AsyncClient, child: Member, reward: dict[str, Any]) -> httpx.Response:
    return await api.post(f"/v1/rewards/{reward['id']}/claim", headers=child.headers)


async def balance(api: httpx.AsyncClient, member: Member) -> int:
    response = await api.get(f"/v1/users/{member.id}/karma", headers=member.headers)
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


def count(database_url: str, query: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    value: int = row[0]
    return value


async def test_claim_and_approve_reach_exactly_the_right_people(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    """Seed example 3: the child sees its claim, both parents see the approval task."""
    (ada, ben, kim, lou, zed), sockets = await seed_household(api, web)
    reward = await create_reward(api, ada, "Ice cream", 10)
    await grant(api, ada, kim, 15)

    claimed = await claim(api, kim, reward)
    assert claimed.status_code == 201, claimed.text
    claim_out = claimed.json()
    assert (claim_out["status"], claim_out["memberId"], claim_out["karmaCost"]) == (
        "pending",
        kim.id,
        10,
    )
    assert claim_out["reward"] == reward

    await wait_for(sockets[kim.id], 2)
    [(first, _), (name, created)] = data_of(sockets[kim.id])
    assert (first, name) == ("karma.awarded", "claim.created")
    task_id = created["approvalTaskId"]
    assert created == {
        "claimId": claim_out["id"],
        "rewardId": reward["id"],
        "memberId": kim.id,
        "reward": reward,
        "status": "pending",
        "karmaCost": 10,
        "newBalance": 5,
        "approvalTaskId": task_id,
        "createdAt": claim_out["createdAt"],
    }
    for parent in (ada, ben):
        await wait_for(sockets[parent.id], 1)
        [(name, data)] = data_of(sockets[parent.id])
        assert name == "task.created"
        assert data["taskId"] == task_id
        assert sorted(data["assignedTo"]) == sorted([ada.id, ben.id])
        task = data["task"]
        assert task["title"] == "Approve reward: Ice cream for Kim"
        assert (task["claimId"], task["createdBy"], task["completedAt"]) == (
            claim_out["id"],
            kim.id,
            None,
        )

    approved = await api.post(f"/v1/claims/{claim_out['id']}/approve", headers=ben.headers)
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decidedBy"]) == ("approved", ben.id)

    await wait_for(sockets[kim.id], 3)
    (name, decided) = data_of(sockets[kim.id])[2]
    assert name == "claim.approved"
    assert decided == {
        "claimId": claim_out["id"],
        "rewardId": reward["id"],
        "memberId": kim.id,
        "reward": reward,
        "status": "approved",
        "karmaCost": 10,
        "decidedBy": ben.id,
        "decidedAt": approved.json()["decidedAt"],
    }
    for parent in (ada, ben):
        await wait_for(sockets[parent.id], 2)
        (name, done) = data_of(sockets[parent.id])[1]
        assert (name, done["taskId"], done["completedBy"]) == ("task.completed", task_id, ben.id)
        assert done["task"]["completedBy"] == ben.id

    # Deciding again is refused and changes nothing.
    for action in ("approve", "reject"):
        again = await api.post(f"/v1/claims/{claim_out['id']}/{action}", headers=ada.headers)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "claim_not_pending"
    assert await balance(api, kim) == 5

    # Later events for every party: once they arrive, anything else sent would have too.
    await grant(api, ada, kim, 1)
    await grant(api, ada, lou, 1)
    await grant(api, zed, zed, 1)
    marker = (
        await api.post(
            f"/v1/families/{ada.family_id}/tasks",
            headers=ada.headers,
            json={"title": "marker", "assignedTo": [ada.id, ben.id]},
        )
    ).json()
    await wait_for(sockets[kim.id], 4)
    for member in (lou, zed):
        await wait_for(sockets[member.id], 1)
    for parent in (ada, ben):
        await wait_for(sockets[parent.id], 3)
    assert names(sockets[kim.id]) == [
        "karma.awarded",
        "claim.created",
        "claim.approved",
        "karma.awarded",
    ]
    assert data_of(sockets[kim.id])[3][1]["newBalance"] == 6  # no refund slipped in
    assert [(n, d["userId"]) for n, d in data_of(sockets[lou.id])] == [("karma.awarded", lou.id)]
    assert [(n, d["userId"]) for n, d in data_of(sockets[zed.id])] == [("karma.awarded", zed.id)]
    for parent in (ada, ben):
        assert [(n, d["taskId"]) for n, d in data_of(sockets[parent.id])] == [
            ("task.created", task_id),
            ("task.completed", task_id),
            ("task.created", marker["id"]),
        ]
    for recorder in sockets.values():
        await recorder.disconnect()


async def test_reject_refunds_exactly_once(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess, database_url: str
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    sockets = {m.id: await connected(web, m) for m in (ada, kim)}
    reward = await create_reward(api, ada, "Movie night", 7)
    await grant(api, ada, kim, 10)
    claimed = await claim(api, kim, reward)
    assert claimed.status_code == 201, claimed.text
    claim_id = claimed.json()["id"]
    await wait_for(sockets[ada.id], 1)
    [(_, created)] = data_of(sockets[ada.id])
    task_url = f"/v1/tasks/{created['taskId']}"

    # The approval task changes only through its claim.
    for response in (
        await api.post(f"{task_url}/complete", headers=ada.headers),
        await api.patch(task_url, headers=ada.headers, json={"karmaReward": 100}),
        await api.delete(task_url, headers=ada.headers),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"]["details"] == {"claimId": claim_id}
    assert (await api.post(f"{task_url}/complete", headers=kim.headers)).status_code == 403

    rejected = await api.post(f"/v1/claims/{claim_id}/reject", headers=ada.headers)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    for action in ("reject", "approve"):
        again = await api.post(f"/v1/claims/{claim_id}/{action}", headers=ada.headers)
        assert again.status_code == 409
        assert again.json()["error"]["details"] == {"status": "rejected"}

    await wait_for(sockets[kim.id], 3)
    events = data_of(sockets[kim.id])
    assert [name for name, _ in events] == ["karma.awarded", "claim.created", "claim.rejected"]
    assert events[1][1]["newBalance"] == 3
    refund = events[2][1]
    assert (refund["claimId"], refund["status"], refund["decidedBy"]) == (
        claim_id,
        "rejected",
        ada.id,
    )
    assert (refund["refundedKarma"], refund["newBalance"]) == (7, 10)
    await wait_for(sockets[ada.id], 2)
    assert [(n, d["taskId"]) for n, d in data_of(sockets[ada.id])] == [
        ("task.created", created["taskId"]),
        ("task.completed", created["taskId"]),
    ]

    history = (await api.get(f"/v1/users/{kim.id}/karma", headers=kim.headers)).json()
    assert history["balance"] == 10
    assert [(e["source"], e["amount"], e["referenceId"]) for e in history["history"]] == [
        ("claim_refund", 7, claim_id),
        ("claim", -7, claim_id),
        ("grant", 10, None),
    ]
    tasks = (await api.get(f"/v1/families/{ada.family_id}/tasks", headers=ada.headers)).json()
    assert [(t["claimId"], t["completedBy"]) for t in tasks] == [(claim_id, ada.id)]
    claim_events = "SELECT count(*) FROM outbox_events WHERE type ~ '^(task|karma|claim)\\.'"
    assert count(database_url, claim_events) == 5
    for recorder in sockets.values():
        await recorder.disconnect()


async def test_concurrent_claims_spend_the_karma_once(
    api: httpx.AsyncClient, database_url: str
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    rewards = [await create_reward(api, ada, name, 6) for name in ("Cake", "Comic")]
    await grant(api, ada, kim, 10)

    # Together the claims want 24 karma of 10: the balance row lock lets exactly one through.
    responses = await asyncio.gather(*(claim(api, kim, r) for r in rewards * 2))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409], [r.text for r in responses]
    refusals = [r.json()["error"] for r in responses if r.status_code == 409]
    assert {(e["code"], e["details"]["balance"]) for e in refusals} == {("insufficient_karma", 4)}

    assert await balance(api, kim) == 4
    assert count(database_url, "SELECT count(*) FROM reward_claims") == 1
    assert count(database_url, "SELECT count(*) FROM tasks WHERE claim_id IS NOT NULL") == 1
    assert count(database_url, "SELECT count(*) FROM karma_ledger WHERE source = 'claim'") == 1
    assert count(database_url, "SELECT sum(amount) FROM karma_ledger") == 4

    # Deciding concurrently: the claim row lock lets exactly one decision through.
    [won] = [r.json() for r in responses if r.status_code == 201]
    decisions = await asyncio.gather(
        *(
            api.post(f"/v1/claims/{won['id']}/{action}", headers=ada.headers)
            for action in ("reject", "approve", "reject", "approve")
        )
    )
    assert sorted(r.status_code for r in decisions) == [200, 409, 409, 409]
    [decided] = [r.json() for r in decisions if r.status_code == 200]
    refunds = count(database_url, "SELECT count(*) FROM karma_ledger WHERE source = 'claim_refund'")
    assert refunds == (1 if decided["status"] == "rejected" else 0)
    assert await balance(api, kim) == (10 if decided["status"] == "rejected" else 4)
    assert count(database_url, "SELECT count(*) FROM tasks WHERE completed_at IS NOT NULL") == 1


async def test_refused_claims_write_nothing(api: httpx.AsyncClient, database_url: str) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    lou = await add_member(api, ada, "Lou", "child")
    zed = await signup(api, "Zed")
    ours = await create_reward(api, ada, "Bike", 10)
    theirs = await create_reward(api, zed, "Boat", 1)
    await grant(api, ada, kim, 5)
    before = count(database_url, "SELECT count(*) FROM outbox_events")

    short = await claim(api, kim, ours)
    assert short.status_code == 409
    assert short.json()["error"] == {
        "code": "insufficient_karma",
        "message": "not enough karma",
        "details": {"balance": 5, "required": 10},
    }
    never_had_any = await claim(api, lou, ours)
    assert never_had_any.status_code == 409
    assert never_had_any.json()["error"]["details"] == {"balance": 0, "required": 10}
    other_family = await claim(api, kim, theirs)
    assert (other_family.status_code, other_family.json()["error"]["code"]) == (404, "not_found")
    unknown = await api.post(f"/v1/rewards/{kim.id}/claim", headers=kim.headers)
    assert unknown.status_code == 404
    parent_claims = await claim(api, ada, ours)
    assert (parent_claims.status_code, parent_claims.json()["error"]["code"]) == (403, "forbidden")

    for table in ("reward_claims", "tasks"):
        assert count(database_url, f"SELECT count(*) FROM {table}") == 0, table
    assert count(database_url, "SELECT count(*) FROM karma_ledger") == 1
    assert count(database_url, "SELECT count(*) FROM outbox_events") == before
    assert await balance(api, kim) == 5


async def test_reward_and_claim_permissions(api: httpx.AsyncClient) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    zed = await signup(api, "Zed")
    zoe = await add_member(api, zed, "Zoe", "child")
    zac = await add_member(api, zed, "Zac", "child")
    their_reward = await create_reward(api, zed, "Boat", 2)
    await grant(api, zed, zoe, 2)
    their_claim = (await claim(api, zoe, their_reward)).json()
    ours_url = f"/v1/families/{ada.family_id}/rewards"
    theirs_url = f"/v1/families/{zed.family_id}/rewards"
    body = {"name": "Kite", "karmaCost": 3}

    cases = [
        # Another family's rewards and claims do not exist for us.
        (await api.get(theirs_url, headers=ada.headers), 404),
        (await api.get(theirs_url, headers=kim.headers), 404),
        (await api.post(theirs_url, headers=ada.headers, json=body), 404),
        (await api.get(f"/v1/families/{zed.family_id}/claims", headers=ada.headers), 404),
        (await claim(api, kim, their_reward), 404),
        (await api.post(f"/v1/claims/{their_claim['id']}/approve", headers=ada.headers), 404),
        (await api.post(f"/v1/claims/{their_claim['id']}/reject", headers=ada.headers), 404),
        (await api.get(f"/v1/users/{zoe.id}/karma", headers=ada.headers), 404),
        # Children may not do what only parents may.
        (await api.post(ours_url, headers=kim.headers, json=body), 403),
        (await api.post(f"/v1/claims/{their_claim['id']}/approve", headers=zoe.headers), 403),
        (await api.post(f"/v1/claims/{their_claim['id']}/reject", headers=zac.headers), 403),
        # Not logged in.
        (await api.get(ours_url), 401),
        (await api.post(f"/v1/rewards/{their_reward['id']}/claim"), 401),
        (await api.post(f"/v1/claims/{their_claim['id']}/approve"), 401),
    ]
    assert [r.status_code for r, _ in cases] == [status for _, status in cases]

    for bad in (
        {"name": "", "karmaCost": 3},
        {"name": "   ", "karmaCost": 3},
        {"name": "x" * 101, "karmaCost": 3},
        {"name": "Kite", "karmaCost": 0},
        {"name": "Kite"},
        {"name": "Kite", "karmaCost": 3, "price": 4},
    ):
        response = await api.post(ours_url, headers=ada.headers, json=bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "validation_error"
    bad_filter = await api.get(f"/v1/families/{zed.family_id}/claims?status=x", headers=zed.headers)
    assert bad_filter.status_code == 422

    # Every member of the family sees its rewards; the refusals above changed nothing.
    created = await api.post(ours_url, headers=ada.headers, json=body)
    assert created.status_code == 201
    listed = await api.get(ours_url, headers=kim.headers)
    assert [r["name"] for r in listed.json()] == ["Kite"]
    claims_url = f"/v1/families/{zed.family_id}/claims"
    parent_view = (await api.get(claims_url, headers=zed.headers)).json()
    assert [(c["id"], c["status"]) for c in parent_view] == [(their_claim["id"], "pending")]
    # A child sees only its own claims.
    assert [c["id"] for c in (await api.get(claims_url, headers=zoe.headers)).json()] == [
        their_claim["id"]
    ]
    assert (await api.get(claims_url, headers=zac.headers)).json() == []
    approved = await api.get(f"{claims_url}?status=approved", headers=zed.headers)
    assert approved.json() == []
