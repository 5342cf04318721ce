"""End to end: a REST mutation reaches exactly the right Socket.IO clients, through the outbox."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import pytest
import socketio

from doubles.socket_clients import SocketRecorder
from tests.harness import ManagedProcess, add_member, connected, create_task, signup, web_process


def task_ids(recorder: SocketRecorder, event_type: str) -> list[str]:
    return [envelope["data"]["taskId"] for envelope in recorder.of_type(event_type)]


async def test_task_created_reaches_only_its_assignee(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    assignee = await add_member(api, parent, "Kim", "child")
    bystander = await add_member(api, parent, "Lou", "child")
    stranger = await signup(api, "Zed")
    sockets = {m.id: await connected(web, m) for m in (parent, assignee, bystander, stranger)}

    task = await create_task(api, parent, [assignee], description="Before dinner")

    await sockets[assignee.id].wait_until(lambda events: len(events) >= 1)
    [(name, envelope)] = sockets[assignee.id].events
    assert name == "task.created"
    assert envelope["id"].startswith("evt_")
    assert envelope["type"] == "task.created"
    assert envelope["version"] == 1
    assert envelope["seq"] == 2  # Kim's stream's first event was Lou's member.added
    assert envelope["familyId"] == parent.family_id
    assert datetime.fromisoformat(envelope["occurredAt"]) <= datetime.now(UTC)
    assert envelope["data"] == {
        "taskId": task["id"],
        "familyId": parent.family_id,
        "assignedTo": [assignee.id],
        "task": task,
    }

    # A later event for everybody else, committed after the first: once it has arrived, the
    # first one would have too, had it been sent to them.
    marker = await create_task(api, parent, [bystander])
    stranger_task = await create_task(api, stranger, [stranger])
    await sockets[bystander.id].wait_until(lambda events: len(events) >= 1)
    await sockets[stranger.id].wait_until(lambda events: len(events) >= 1)
    assert task_ids(sockets[bystander.id], "task.created") == [marker["id"]]
    assert task_ids(sockets[stranger.id], "task.created") == [stranger_task["id"]]
    assert sockets[parent.id].events == []
    assert len(sockets[assignee.id].events) == 1
    for recorder in sockets.values():
        await recorder.disconnect()


async def test_task_lifecycle_events(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    first = await add_member(api, parent, "Kim", "child")
    second = await add_member(api, parent, "Lou", "child")
    parent_socket, first_socket, second_socket = [
        await connected(web, m) for m in (parent, first, second)
    ]
    task = await create_task(api, parent, [first])
    reassigned = await api.patch(
        f"/v1/tasks/{task['id']}", headers=parent.headers, json={"assignedTo": [second.id]}
    )
    assert reassigned.status_code == 200, reassigned.text
    completed = await api.post(f"/v1/tasks/{task['id']}/complete", headers=second.headers)
    assert completed.status_code == 200
    deleted = await api.delete(f"/v1/tasks/{task['id']}", headers=parent.headers)
    assert deleted.status_code == 204

    await second_socket.wait_until(lambda events: len(events) >= 3)
    await parent_socket.wait_until(lambda events: len(events) >= 2)
    assert [name for name, _ in second_socket.events] == [
        "task.assigned",
        "task.completed",
        "task.deleted",
    ]
    assert [e["seq"] for _, e in second_socket.events] == [1, 2, 3]
    assigned = second_socket.of_type("task.assigned")[0]["data"]
    assert assigned["assignedTo"] == [second.id]
    done = second_socket.of_type("task.completed")[0]["data"]
    assert done["completedBy"] == second.id
    assert done["task"]["completedBy"] == second.id
    gone = second_socket.of_type("task.deleted")[0]["data"]
    assert gone["taskId"] == task["id"]
    assert set(gone["affectedUsers"]) == {second.id, parent.id}
    assert [name for name, _ in parent_socket.events] == ["task.completed", "task.deleted"]
    # The removed assignee learns of the reassignment, and of nothing after it.
    await first_socket.wait_until(lambda events: len(events) >= 2)
    assert [name for name, _ in first_socket.events] == ["task.created", "task.assigned"]


async def test_payload_over_the_notify_limit_arrives_intact(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    socket = await connected(web, child)
    description = "Grüße, 家族 🧹 " * 400  # ~5,000 characters, ~30 KB once JSON-escaped
    task = await create_task(api, parent, [child], description=description)
    await socket.wait_until(lambda events: len(events) >= 1)
    assert socket.of_type("task.created")[0]["data"]["task"] == task
    assert task["description"] == description


async def test_socket_is_disconnected_when_its_token_expires(
    database_url: str, log_dir: Path
) -> None:
    proc, base_url = await asyncio.to_thread(
        web_process, database_url, log_dir, APP_JWT_TTL_SECONDS="2"
    )
    try:
        async with httpx.AsyncClient(base_url=base_url) as api:
            parent = await signup(api, "Ada")
        recorder = await connected(base_url, parent)
        expired = ("session.expired", {"reason": "token_expired"})
        await recorder.wait_until(lambda _: expired in recorder.received, 10)
        async with asyncio.timeout(5):
            await recorder.client.wait()  # returns once the server has closed the socket
        assert not recorder.client.connected
    finally:
        proc.stop()


async def test_sockets_from_another_site_are_refused(api: httpx.AsyncClient, web: str) -> None:
    parent = await signup(api, "Ada")
    # Its own HTTP session: the refused handshake leaves the client's open otherwise.
    async with aiohttp.ClientSession() as http:
        foreign = socketio.AsyncClient(reconnection=False, http_session=http)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await foreign.connect(
                web,
                auth={"token": parent.token},
                headers={"Origin": "https://evil.example"},
                transports=["websocket"],
            )
    own = socketio.AsyncClient(reconnection=False)
    await own.connect(
        web, auth={"token": parent.token}, headers={"Origin": web}, transports=["websocket"]
    )
    assert own.connected
    await own.disconnect()
