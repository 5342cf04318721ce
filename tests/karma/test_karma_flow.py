"""Karma end to end: grants and task rewards reach exactly their receiver, through the outbox."""

from __future__ import annotations

from typing import Any

import httpx

from tests.events import data_of, domain_events, wait_for
from tests.harness import (
    ManagedProcess,
    Member,
    add_member,
    connected,
    create_task,
    grant,
    run_sql,
    seed_household,
    signup,
)


async def test_grant_reaches_only_the_receiver(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    """Seed example 2: a parent's grant reaches the child, with the balance it leaves."""
    (ada, ben, kim, lou, zed), sockets = await seed_household(api, web)

    first = await grant(api, ada, kim, 5, "Tidied the room")
    assert (first["userId"], first["amount"], first["balanceAfter"]) == (kim.id, 5, 5)
    second = await grant(api, ben, kim, 3, "  Homework  ")

    await wait_for(sockets[kim.id], 2)
    assert data_of(sockets[kim.id]) == [
        (
            "karma.awarded",
            {
                "entryId": first["id"],
                "userId": kim.id,
                "amount": 5,
                "reason": "Tidied the room",
                "source": "grant",
                "newBalance": 5,
                "grantedBy": ada.id,
            },
        ),
        (
            "karma.awarded",
            {
                "entryId": second["id"],
                "userId": kim.id,
                "amount": 3,
                "reason": "Homework",
                "source": "grant",
                "newBalance": 8,
                "grantedBy": ben.id,
            },
        ),
    ]
    envelopes = [envelope for _, envelope in domain_events(sockets[kim.id].events)]
    # Next to each other on Kim's stream (after the member.added events of her siblings).
    first_seq = envelopes[0]["seq"]
    assert [(e["seq"] - first_seq, e["familyId"], e["version"]) for e in envelopes] == [
        (0, ada.family_id, 1),
        (1, ada.family_id, 1),
    ]

    # Later events for everybody else: once they have arrived, the grants would have too.
    lou_marker = await grant(api, ada, lou, 1, "marker")
    marker_task = await create_task(api, ada, [ada, ben], title="marker")
    await grant(api, zed, zed, 1, "marker")
    for member in (lou, ada, ben, zed):
        await wait_for(sockets[member.id], 1)
    assert data_of(sockets[lou.id]) == [
        (
            "karma.awarded",
            {
                "entryId": lou_marker["id"],
                "userId": lou.id,
                "amount": 1,
                "reason": "marker",
                "source": "grant",
                "newBalance": 1,
                "grantedBy": ada.id,
            },
        )
    ]
    for parent in (ada, ben):
        assert [(name, data["taskId"]) for name, data in data_of(sockets[parent.id])] == [
            ("task.created", marker_task["id"])
        ]
    assert [(n, d["userId"], d["newBalance"]) for n, d in data_of(sockets[zed.id])] == [
        ("karma.awarded", zed.id, 1)
    ]
    assert len(data_of(sockets[kim.id])) == 2

    view = await api.get(f"/v1/users/{kim.id}/karma", headers=kim.headers)
    assert view.status_code == 200
    body = view.json()
    assert (body["userId"], body["balance"]) == (kim.id, 8)
    assert [
        (e["amount"], e["balanceAfter"], e["source"], e["reason"], e["createdBy"])
        for e in body["history"]
    ] == [(3, 8, "grant", "Homework", ben.id), (5, 5, "grant", "Tidied the room", ada.id)]
    assert body["history"][1] == {**first, "userId": kim.id}
    for recorder in sockets.values():
        await recorder.disconnect()


async def test_completing_a_task_credits_each_assignee(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess, database_url: str
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    lou = await add_member(api, ada, "Lou", "child")
    sockets = {m.id: await connected(web, m) for m in (ada, kim, lou)}
    await grant(api, ada, kim, 2, "Head start")
    task = await create_task(api, ada, [kim, lou], karmaReward=4)

    done = await api.post(f"/v1/tasks/{task['id']}/complete", headers=kim.headers)
    assert done.status_code == 200, done.text
    again = await api.post(f"/v1/tasks/{task['id']}/complete", headers=ada.headers)
    assert again.status_code == 409

    await wait_for(sockets[kim.id], 4)
    await wait_for(sockets[lou.id], 3)
    completed = {"taskId": task["id"], "completedBy": kim.id, "task": done.json()}

    async def awarded(member: Member, new_balance: int) -> tuple[str, dict[str, Any]]:
        history = (await api.get(f"/v1/users/{member.id}/karma", headers=ada.headers)).json()
        return (
            "karma.awarded",
            {
                "entryId": history["history"][0]["id"],
                "userId": member.id,
                "amount": 4,
                "reason": "Dishes",
                "source": "task",
                "newBalance": new_balance,
                "grantedBy": ada.id,
            },
        )

    kim_events = data_of(sockets[kim.id])
    assert [name for name, _ in kim_events] == [
        "karma.awarded",
        "task.created",
        "task.completed",
        "karma.awarded",
    ]
    assert kim_events[2:] == [("task.completed", completed), await awarded(kim, 6)]
    lou_events = data_of(sockets[lou.id])
    assert [name for name, _ in lou_events] == ["task.created", "task.completed", "karma.awarded"]
    assert lou_events[1:] == [("task.completed", completed), await awarded(lou, 4)]

    # The parent learns of the completion, and of no karma: proven by a later marker.
    marker = await create_task(api, ada, [ada], title="marker")
    await wait_for(sockets[ada.id], 2)
    assert [(name, data["taskId"]) for name, data in data_of(sockets[ada.id])] == [
        ("task.completed", task["id"]),
        ("task.created", marker["id"]),
    ]
    assert len(data_of(sockets[kim.id])) == 4
    assert len(data_of(sockets[lou.id])) == 3

    history = (await api.get(f"/v1/users/{lou.id}/karma", headers=kim.headers)).json()
    assert history["balance"] == 4
    [entry] = history["history"]
    assert (entry["source"], entry["amount"], entry["referenceId"]) == ("task", 4, task["id"])
    rows = await run_sql(
        database_url,
        "SELECT user_id::text, sum(amount) FROM karma_ledger GROUP BY user_id"
        " EXCEPT SELECT user_id::text, balance FROM karma_balances",
    )
    assert rows == []  # every balance is the sum of its ledger
    for recorder in sockets.values():
        await recorder.disconnect()


async def test_karma_permissions_and_validation(api: httpx.AsyncClient, database_url: str) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    lou = await add_member(api, ada, "Lou", "child")
    zed = await signup(api, "Zed")
    zed_child = await add_member(api, zed, "Zoe", "child")

    def grant_body(member: Member, **fields: object) -> dict[str, object]:
        return {"userId": member.id, "amount": 5, "reason": "Because", **fields}

    refused = [
        # A child may not grant, not even to a sibling.
        (await api.post("/v1/karma/grant", headers=kim.headers, json=grant_body(lou)), 403),
        # Another family's member is not found.
        (await api.post("/v1/karma/grant", headers=ada.headers, json=grant_body(zed_child)), 404),
        (await api.get(f"/v1/users/{zed_child.id}/karma", headers=ada.headers), 404),
        (await api.get(f"/v1/users/{kim.id}/karma", headers=zed.headers), 404),
        (await api.get(f"/v1/users/{ada.family_id}/karma", headers=ada.headers), 404),
        (await api.post("/v1/karma/grant", json=grant_body(kim)), 401),
    ]
    assert [r.status_code for r, _ in refused] == [status for _, status in refused]
    codes = [r.json()["error"]["code"] for r, _ in refused]
    assert codes == [
        "forbidden",
        "not_found",
        "not_found",
        "not_found",
        "not_found",
        "unauthorized",
    ]

    for body in (
        grant_body(kim, amount=0),
        grant_body(kim, amount=10_001),
        grant_body(kim, amount=-3),
        grant_body(kim, amount="lots"),
        grant_body(kim, reason=""),
        grant_body(kim, reason="   "),
        grant_body(kim, reason="x" * 201),
        grant_body(kim, userId="not-a-uuid"),
        grant_body(kim, bonus=True),
        {"amount": 5, "reason": "no user"},
    ):
        response = await api.post("/v1/karma/grant", headers=ada.headers, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    for query in ("limit=0", "limit=201", "before=0", "limit=x"):
        response = await api.get(f"/v1/users/{kim.id}/karma?{query}", headers=ada.headers)
        assert response.status_code == 422, query

    assert await run_sql(database_url, "SELECT count(*) FROM karma_ledger") == [(0,)]
    karma_events = "SELECT count(*) FROM outbox_events WHERE type LIKE 'karma.%%'"
    assert await run_sql(database_url, karma_events) == [(0,)]

    # The bounds themselves are accepted; children read their own and their siblings' karma.
    await grant(api, ada, kim, 10_000, "x" * 200)
    await grant(api, ada, kim, 1, "one more")
    for reader in (kim, lou, ada):
        view = await api.get(f"/v1/users/{kim.id}/karma", headers=reader.headers)
        assert view.status_code == 200
        assert view.json()["balance"] == 10_001
    newest = (await api.get(f"/v1/users/{kim.id}/karma?limit=1", headers=kim.headers)).json()
    [entry] = newest["history"]
    assert entry["amount"] == 1
    older = await api.get(f"/v1/users/{kim.id}/karma?before={entry['id']}", headers=kim.headers)
    assert [e["amount"] for e in older.json()["history"]] == [10_000]
    empty = (await api.get(f"/v1/users/{lou.id}/karma", headers=kim.headers)).json()
    assert empty == {"userId": lou.id, "balance": 0, "history": []}
