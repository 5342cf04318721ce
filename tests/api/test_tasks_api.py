"""Tasks over REST: the permissions a family app needs, and JSON errors for bad input."""

from __future__ import annotations

import httpx
import psycopg

from tests.harness import add_member, signup


async def test_parents_manage_tasks_children_complete_their_own(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    kim = await add_member(api, parent, "Kim", "child")
    lou = await add_member(api, parent, "Lou", "child")
    tasks_url = f"/v1/families/{parent.family_id}/tasks"

    refused = await api.post(tasks_url, headers=kim.headers, json={"title": "Cake"})
    assert refused.status_code == 403
    created = await api.post(
        tasks_url,
        headers=parent.headers,
        json={"title": "Dishes", "karmaReward": 5, "assignedTo": [kim.id]},
    )
    assert created.status_code == 201
    task = created.json()
    assert (task["title"], task["assignedTo"], task["completedAt"]) == ("Dishes", [kim.id], None)

    listed = await api.get(tasks_url, headers=lou.headers)
    assert [t["id"] for t in listed.json()] == [task["id"]]

    task_url = f"/v1/tasks/{task['id']}"
    assert (await api.patch(task_url, headers=kim.headers, json={"title": "x"})).status_code == 403
    assert (await api.post(f"{task_url}/complete", headers=lou.headers)).status_code == 403
    assert (await api.delete(task_url, headers=kim.headers)).status_code == 403

    renamed = await api.patch(task_url, headers=parent.headers, json={"title": "Dry dishes"})
    assert renamed.json()["title"] == "Dry dishes"
    done = await api.post(f"{task_url}/complete", headers=kim.headers)
    assert done.status_code == 200
    assert done.json()["completedBy"] == kim.id
    again = await api.post(f"{task_url}/complete", headers=parent.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"

    assert (await api.delete(task_url, headers=parent.headers)).status_code == 204
    assert (await api.get(tasks_url, headers=parent.headers)).json() == []
    assert (await api.delete(task_url, headers=parent.headers)).status_code == 404


async def test_no_access_across_families(api: httpx.AsyncClient) -> None:
    ours, theirs = await signup(api, "Ada"), await signup(api, "Bob")
    their_child = await add_member(api, theirs, "Zed", "child")
    created = await api.post(
        f"/v1/families/{theirs.family_id}/tasks", headers=theirs.headers, json={"title": "Secret"}
    )
    task_url = f"/v1/tasks/{created.json()['id']}"
    responses = [
        await api.get(f"/v1/families/{theirs.family_id}/tasks", headers=ours.headers),
        await api.post(
            f"/v1/families/{theirs.family_id}/tasks", headers=ours.headers, json={"title": "x"}
        ),
        await api.patch(task_url, headers=ours.headers, json={"title": "mine"}),
        await api.post(f"{task_url}/complete", headers=ours.headers),
        await api.delete(task_url, headers=ours.headers),
        # Assigning another family's member to our own task.
        await api.post(
            f"/v1/families/{ours.family_id}/tasks",
            headers=ours.headers,
            json={"title": "x", "assignedTo": [their_child.id]},
        ),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert all(r.json()["error"]["code"] == "not_found" for r in responses)


async def test_bad_task_input_is_a_json_422(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    tasks_url = f"/v1/families/{parent.family_id}/tasks"
    for body in (
        {"title": ""},
        {"title": "x", "karmaReward": -1},
        {"title": "x", "assignedTo": ["not-a-uuid"]},
        {"title": "x", "unknownField": 1},
        [],
    ):
        response = await api.post(tasks_url, headers=parent.headers, json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    created = await api.post(tasks_url, headers=parent.headers, json={"title": "x"})
    task_url = f"/v1/tasks/{created.json()['id']}"
    for body in ({}, {"title": None}):
        response = await api.patch(task_url, headers=parent.headers, json=body)
        assert response.status_code == 422, body


async def test_a_2xx_means_committed(api: httpx.AsyncClient, database_url: str) -> None:
    parent = await signup(api, "Ada")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for n in range(20):
            created = await api.post(
                f"/v1/families/{parent.family_id}/tasks",
                headers=parent.headers,
                json={"title": f"task {n}"},
            )
            row = await conn.execute("SELECT 1 FROM tasks WHERE id = %s", (created.json()["id"],))
            assert await row.fetchone() == (1,)
