"""Every REST endpoint: another family's member sees nothing, a child cannot act as a parent."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from psycopg import sql

from tests.harness import Member, add_member, signup


async def created(api: httpx.AsyncClient, member: Member, path: str, body: Any) -> Any:
    response = await api.post(path, headers=member.headers, json=body)
    assert response.status_code in (200, 201), (path, response.text)
    return response.json()


def row_counts(database_url: str) -> dict[str, object]:
    tables = (
        "tasks",
        "task_templates",
        "karma_ledger",
        "rewards",
        "reward_claims",
        "chats",
        "chat_messages",
        "users",
        "outbox_events",
    )
    counts = {}
    with psycopg.connect(database_url) as conn:
        for table in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            counts[table] = row.fetchone()
    return counts


async def test_permission_matrix(api: httpx.AsyncClient, database_url: str) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    outsider = await signup(api, "Zed")
    outsider_child = await add_member(api, outsider, "Uma", "child")
    family = f"/v1/families/{parent.family_id}"

    task = await created(api, parent, f"{family}/tasks", {"title": "t", "assignedTo": [child.id]})
    template = await created(
        api,
        parent,
        f"{family}/task-templates",
        {"title": "t", "assignedTo": [child.id], "schedule": {"kind": "weekdays", "days": ["mon"]}},
    )
    await created(api, parent, "/v1/karma/grant", {"userId": child.id, "amount": 5, "reason": "r"})
    reward = await created(api, parent, f"{family}/rewards", {"name": "r", "karmaCost": 1})
    claim = await created(api, child, f"/v1/rewards/{reward['id']}/claim", None)
    chat = await created(api, parent, f"{family}/chats", {"name": "c", "memberIds": [child.id]})
    before = row_counts(database_url)

    member = {"displayName": "X", "email": "x@example.com", "password": "12345678", "role": "child"}
    new_task = {"title": "x", "assignedTo": []}
    new_template = {
        "title": "x",
        "assignedTo": [child.id],
        "schedule": {"kind": "every_n_days", "n": 2, "startDate": "2026-01-01"},
    }
    grant = {"userId": child.id, "amount": 1, "reason": "r"}
    # (method, path, body): what neither another family nor (below) a child may do.
    foreign: list[tuple[str, str, Any]] = [
        ("GET", f"{family}/members", None),
        ("POST", f"{family}/members", member),
        ("GET", f"{family}/tasks", None),
        ("POST", f"{family}/tasks", new_task),
        ("PATCH", f"/v1/tasks/{task['id']}", {"title": "y"}),
        ("POST", f"/v1/tasks/{task['id']}/complete", None),
        ("DELETE", f"/v1/tasks/{task['id']}", None),
        ("GET", f"{family}/task-templates", None),
        ("POST", f"{family}/task-templates", new_template),
        ("DELETE", f"/v1/task-templates/{template['id']}", None),
        ("POST", "/v1/karma/grant", grant),
        ("GET", f"/v1/users/{child.id}/karma", None),
        ("GET", f"{family}/rewards", None),
        ("POST", f"{family}/rewards", {"name": "y", "karmaCost": 1}),
        ("GET", f"{family}/claims", None),
        ("POST", f"/v1/claims/{claim['id']}/approve", None),
        ("POST", f"/v1/claims/{claim['id']}/reject", None),
        ("GET", f"{family}/chats", None),
        ("POST", f"{family}/chats", {"name": "y", "memberIds": []}),
        ("GET", f"/v1/chats/{chat['id']}/messages", None),
        ("POST", f"/v1/chats/{chat['id']}/messages", {"body": "hi"}),
    ]
    for actor in (outsider, outsider_child):
        for method, path, body in foreign:
            response = await api.request(method, path, headers=actor.headers, json=body)
            assert response.status_code in (403, 404), (actor.role, method, path, response.text)
            assert response.json()["error"]["code"] in ("forbidden", "not_found")
    claim_theirs = await api.post(
        f"/v1/rewards/{reward['id']}/claim", headers=outsider_child.headers
    )
    assert claim_theirs.status_code == 404

    parents_only = [
        ("POST", f"{family}/members", member),
        ("POST", f"{family}/tasks", new_task),
        ("PATCH", f"/v1/tasks/{task['id']}", {"title": "y"}),
        ("DELETE", f"/v1/tasks/{task['id']}", None),
        ("POST", f"{family}/task-templates", new_template),
        ("DELETE", f"/v1/task-templates/{template['id']}", None),
        ("POST", "/v1/karma/grant", grant),
        ("POST", f"{family}/rewards", {"name": "y", "karmaCost": 1}),
        ("POST", f"/v1/claims/{claim['id']}/approve", None),
        ("POST", f"/v1/claims/{claim['id']}/reject", None),
    ]
    for method, path, body in parents_only:
        response = await api.request(method, path, headers=child.headers, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    # And the one thing only children do.
    parent_claim = await api.post(f"/v1/rewards/{reward['id']}/claim", headers=parent.headers)
    assert parent_claim.status_code == 403

    for path in (f"{family}/tasks", f"{family}/members", "/v1/me", f"{family}/chats"):
        assert (await api.get(path)).status_code == 401
    # Nothing was written by any refused request.
    assert row_counts(database_url) == before
