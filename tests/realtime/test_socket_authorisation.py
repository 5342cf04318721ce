"""Authorisation over sockets: a member reaches exactly their own streams and joined chats.

One family member (Lou) tries every way a socket could reach what is not theirs; each is
refused with its reason, and nothing of another user's or another chat's stream arrives.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from doubles.socket_clients import SocketRecorder
from tests.chat.support import call, create_chat, error_code, post_message
from tests.harness import ManagedProcess, add_member, connected, run_sql, signup


async def test_a_socket_reaches_only_its_own_streams_and_joined_chats(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess, database_url: str
) -> None:
    parent = await signup(api, "Ada")
    kid = await add_member(api, parent, "Kim", "child")
    lou = await add_member(api, parent, "Lou", "child")
    stranger = await signup(api, "Bob")
    private_chat = await create_chat(api, parent, [parent, kid], name="Parent and Kim")
    foreign_chat = await create_chat(api, stranger, [stranger], name="Elsewhere")
    parent_socket = await connected(web, parent)
    assigned = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": "For Ada only", "assignedTo": [parent.id]},
    )
    assert assigned.status_code == 201, assigned.text
    await parent_socket.wait_until(lambda events: len(events) >= 1)
    # Lou connects asking for the parent's stream from its start, too.
    lou_socket = SocketRecorder(web, lou.token)
    await lou_socket.client.connect(
        web,
        auth={"token": lou.token, "lastSeq": {f"user:{parent.id}": 0, f"user:{lou.id}": 0}},
        transports=["websocket"],
        wait_timeout=10,
    )

    refusals: dict[str, tuple[str, Any, str]] = {
        "join a chat of the family it is not in": (
            "chat.join",
            {"chatId": private_chat["id"]},
            "forbidden",
        ),
        "join another family's chat": ("chat.join", {"chatId": foreign_chat["id"]}, "not_found"),
        "join a chat that does not exist": (
            "chat.join",
            {"chatId": str(uuid.uuid4())},
            "not_found",
        ),
        "type in a chat not joined": (
            "chat.typing",
            {"chatId": private_chat["id"], "typing": True},
            "not_joined",
        ),
        "sync another user's stream": (
            "sync.request",
            {"lastSeq": 0, "stream": f"user:{parent.id}"},
            "not_joined",
        ),
        "sync a chat not joined": (
            "sync.request",
            {"lastSeq": 0, "stream": f"chat:{private_chat['id']}"},
            "not_joined",
        ),
        "sync the family room (not a stream)": (
            "sync.request",
            {"lastSeq": 0, "stream": f"family:{parent.family_id}"},
            "not_joined",
        ),
        "report another user's visibility": (
            "app.visibility",
            {"visible": False, "userId": parent.id},
            "invalid_payload",
        ),
        "renew with another user's token": ("auth.renew", {"token": kid.token}, "unauthorized"),
    }
    for label, (event, data, code) in refusals.items():
        assert error_code(await call(lou_socket, event, data)) == code, label

    # What Lou's socket may do still works, and what others do does not reach it.
    assert await call(lou_socket, "app.visibility", {"visible": True}) == {"ok": True}
    assert await call(parent_socket, "chat.join", {"chatId": private_chat["id"]}) == {"ok": True}
    await post_message(api, parent, private_chat["id"], "just us")
    await parent_socket.wait_until(lambda _: bool(parent_socket.of_type("chat.message.created")))
    await asyncio.sleep(1)  # time for a leak to arrive
    own_streams = {f"user:{lou.id}"}
    assert {envelope["stream"] for envelope in lou_socket.envelopes()} <= own_streams
    assert [s["stream"] for s in lou_socket.syncs] == [f"user:{lou.id}"]
    assert not [name for name, _ in lou_socket.received if name == "chat.typing"]

    # Nor does the parent's presence change because of Lou's spoofed report.
    visible = await run_sql(
        database_url, "SELECT bool_and(visible) FROM presence_sockets WHERE user_id = %s", parent.id
    )
    assert visible == [(True,)]

    # Over REST, the event feed is the caller's own stream whatever is asked.
    events = await api.get(
        "/v1/events", params={"after": 0, "stream": f"user:{parent.id}"}, headers=lou.headers
    )
    assert events.status_code == 200, events.text
    assert {e["stream"] for e in events.json()["events"]} <= own_streams
    for recorder in (parent_socket, lou_socket):
        await recorder.disconnect()
