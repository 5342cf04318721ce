"""Chat end to end: REST, the outbox to `chat:<id>` rooms, and the client socket events."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from doubles.socket_clients import DEADLINE_SECONDS, SocketRecorder
from tests.chat.support import call, create_chat, error_code, post_message
from tests.harness import ManagedProcess, add_member, connected, signup, web_process


def bodies(recorder: SocketRecorder) -> list[str]:
    return [e["data"]["message"]["body"] for e in recorder.of_type("chat.message.created")]


def signals(recorder: SocketRecorder, name: str) -> list[Any]:
    """The ephemeral signals (no envelope, not through the outbox) of one name received."""
    return [data for event, data in recorder.received if event == name]


def typing_of(recorder: SocketRecorder) -> list[tuple[str, bool]]:
    return [(d["userId"], d["typing"]) for d in signals(recorder, "chat.typing")]


async def test_chat_rest_api(api: httpx.AsyncClient, web: str) -> None:
    parent = await signup(api, "Ada")
    kid = await add_member(api, parent, "Kim", "child")
    outsider = await add_member(api, parent, "Lou", "child")
    stranger = await signup(api, "Zed")

    # A child may create a chat too; the creator is always a member.
    chat = await create_chat(api, kid, [parent], name="Kim and Ada")
    assert chat["familyId"] == parent.family_id
    assert chat["createdBy"] == kid.id
    assert sorted(chat["memberIds"]) == sorted([kid.id, parent.id])

    refused = {
        "another family's member": (parent, parent.family_id, [stranger.id], 404),
        "another family": (parent, stranger.family_id, [], 404),
    }
    for label, (actor, family_id, member_ids, expected) in refused.items():
        response = await api.post(
            f"/v1/families/{family_id}/chats",
            headers=actor.headers,
            json={"name": "x", "memberIds": member_ids},
        )
        assert response.status_code == expected, label
    blank = await api.post(
        f"/v1/families/{parent.family_id}/chats", headers=parent.headers, json={"name": "  "}
    )
    assert blank.status_code == 422
    assert blank.json()["error"]["code"] == "validation_error"

    listed = await api.get(f"/v1/families/{parent.family_id}/chats", headers=parent.headers)
    assert [c["id"] for c in listed.json()] == [chat["id"]]
    outsider_list = await api.get(
        f"/v1/families/{parent.family_id}/chats", headers=outsider.headers
    )
    assert outsider_list.json() == []
    stranger_list = await api.get(
        f"/v1/families/{parent.family_id}/chats", headers=stranger.headers
    )
    assert stranger_list.status_code == 404

    longest = "é" * 2000
    sent = [
        await post_message(api, parent, chat["id"], "one"),
        await post_message(api, kid, chat["id"], "two"),
        await post_message(api, parent, chat["id"], longest),
    ]
    assert sent[1]["senderId"] == kid.id
    assert sent[1]["chatId"] == chat["id"]
    for bad_body in ("", "   ", "x" * 2001):
        response = await api.post(
            f"/v1/chats/{chat['id']}/messages", headers=parent.headers, json={"body": bad_body}
        )
        assert response.status_code == 422, bad_body

    # Same family but not a member: 403; another family, or no such chat: 404.
    messages_url = f"/v1/chats/{chat['id']}/messages"
    for actor, url, expected in [
        (outsider, messages_url, 403),
        (stranger, messages_url, 404),
        (parent, "/v1/chats/00000000-0000-0000-0000-000000000000/messages", 404),
    ]:
        posted = await api.post(url, headers=actor.headers, json={"body": "hi"})
        read = await api.get(url, headers=actor.headers)
        assert (posted.status_code, read.status_code) == (expected, expected)
    assert (await api.get(messages_url)).status_code == 401

    first_page = await api.get(messages_url, headers=kid.headers, params={"limit": 2})
    assert first_page.status_code == 200
    page = first_page.json()
    assert [m["body"] for m in page["items"]] == [longest, "two"]
    assert page["items"][1] == sent[1]
    second_page = await api.get(
        messages_url, headers=kid.headers, params={"limit": 2, "before": page["nextCursor"]}
    )
    assert second_page.json() == {"items": [sent[0]], "nextCursor": None}
    garbage = await api.get(messages_url, headers=kid.headers, params={"before": "not-a-cursor"})
    assert garbage.status_code == 422
    assert garbage.json()["error"]["code"] == "invalid_cursor"


async def test_chat_message_reaches_joined_members_only(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    parent = await signup(api, "Ada")
    kid = await add_member(api, parent, "Kim", "child")
    idle = await add_member(api, parent, "Ida", "child")  # a member who has not joined
    outsider = await add_member(api, parent, "Lou", "child")  # in the family, not the chat
    stranger = await signup(api, "Zed")
    chat = await create_chat(api, parent, [kid, idle])
    sockets = {m.id: await connected(web, m) for m in (parent, kid, idle, outsider, stranger)}
    join = {"chatId": chat["id"]}

    assert await call(sockets[parent.id], "chat.join", join) == {"ok": True}
    assert await call(sockets[kid.id], "chat.join", join) == {"ok": True}
    assert error_code(await call(sockets[outsider.id], "chat.join", join)) == "forbidden"
    assert error_code(await call(sockets[stranger.id], "chat.join", join)) == "not_found"

    message = await post_message(api, kid, chat["id"], "hello")
    await sockets[parent.id].wait_until(lambda _: len(bodies(sockets[parent.id])) == 1)
    await sockets[kid.id].wait_until(lambda _: len(bodies(sockets[kid.id])) == 1)
    [envelope] = sockets[parent.id].of_type("chat.message.created")
    assert envelope["type"] == "chat.message.created"
    assert envelope["seq"] == 1
    assert envelope["familyId"] == parent.family_id
    assert envelope["data"] == {"chatId": chat["id"], "message": message}

    # Markers committed after the first message was delivered: once they arrive, the first
    # message would have too, had it been sent to these sockets.
    assert await call(sockets[idle.id], "chat.join", join) == {"ok": True}
    await post_message(api, parent, chat["id"], "second")
    outsider_chat = await create_chat(api, outsider, [], name="Lou alone")
    stranger_chat = await create_chat(api, stranger, [], name="Zed alone")
    for member, own_chat in ((outsider, outsider_chat), (stranger, stranger_chat)):
        assert await call(sockets[member.id], "chat.join", {"chatId": own_chat["id"]}) == {
            "ok": True
        }
        await post_message(api, member, own_chat["id"], f"marker for {member.id}")
    for member_id, count in ((idle.id, 1), (outsider.id, 1), (stranger.id, 1), (kid.id, 2)):
        recorder = sockets[member_id]
        await recorder.wait_until(lambda _, r=recorder, n=count: len(bodies(r)) >= n)
    assert bodies(sockets[idle.id]) == ["second"]
    assert sockets[idle.id].of_type("chat.message.created")[0]["seq"] == 2
    assert bodies(sockets[outsider.id]) == [f"marker for {outsider.id}"]
    assert bodies(sockets[stranger.id]) == [f"marker for {stranger.id}"]

    # After chat.leave the room is silent until the socket joins again.
    assert await call(sockets[kid.id], "chat.leave", join) == {"ok": True}
    await post_message(api, parent, chat["id"], "while Kim was away")
    await sockets[parent.id].wait_until(lambda _: len(bodies(sockets[parent.id])) == 3)
    assert await call(sockets[kid.id], "chat.join", join) == {"ok": True}
    await post_message(api, parent, chat["id"], "welcome back")
    await sockets[kid.id].wait_until(lambda _: len(bodies(sockets[kid.id])) >= 3)
    assert bodies(sockets[kid.id]) == ["hello", "second", "welcome back"]
    for recorder in sockets.values():
        await recorder.disconnect()


async def test_typing_reaches_other_joined_members_but_not_the_sender(
    api: httpx.AsyncClient, web: str
) -> None:
    parent = await signup(api, "Ada")
    kid = await add_member(api, parent, "Kim", "child")
    late = await add_member(api, parent, "Ida", "child")
    chat = await create_chat(api, parent, [kid, late])
    ref = {"chatId": chat["id"]}
    parent_socket, kid_socket, late_socket = [await connected(web, m) for m in (parent, kid, late)]
    for recorder in (parent_socket, kid_socket):
        assert await call(recorder, "chat.join", ref) == {"ok": True}

    typing = {"chatId": chat["id"], "typing": True}
    assert error_code(await call(late_socket, "chat.typing", typing)) == "not_joined"
    assert await call(parent_socket, "chat.typing", typing) == {"ok": True}
    await kid_socket.wait_until(lambda _: len(typing_of(kid_socket)) == 1)
    assert signals(kid_socket, "chat.typing") == [
        {"chatId": chat["id"], "userId": parent.id, "typing": True}
    ]
    assert await call(kid_socket, "chat.typing", {**typing, "typing": False}) == {"ok": True}
    # Kim's signal went out after Ada's own: had Ada's reached Ada, it would be here first.
    await parent_socket.wait_until(lambda _: len(typing_of(parent_socket)) >= 1)
    assert typing_of(parent_socket) == [(kid.id, False)]

    # Ida joins late: she sees what is typed from now on, nothing from before.
    assert await call(late_socket, "chat.join", ref) == {"ok": True}
    assert await call(kid_socket, "chat.leave", ref) == {"ok": True}
    assert await call(parent_socket, "chat.typing", typing) == {"ok": True}
    assert await call(kid_socket, "chat.join", ref) == {"ok": True}
    assert await call(parent_socket, "chat.typing", {**typing, "typing": False}) == {"ok": True}
    await late_socket.wait_until(lambda _: len(typing_of(late_socket)) >= 2)
    await kid_socket.wait_until(lambda _: len(typing_of(kid_socket)) >= 2)
    assert typing_of(late_socket) == [(parent.id, True), (parent.id, False)]
    assert typing_of(kid_socket) == [(parent.id, True), (parent.id, False)]

    # Malformed, oversized and unknown client events are answered with an error, not handled.
    assert error_code(await call(parent_socket, "chat.typing", {"chatId": "x"})) == (
        "invalid_payload"
    )
    oversized = {**typing, "padding": "x" * 5000}
    assert error_code(await call(parent_socket, "chat.typing", oversized)) == "payload_too_large"
    assert error_code(await call(parent_socket, "chat.shout", typing)) == "unknown_event"
    missing = {"chatId": "00000000-0000-0000-0000-000000000000"}
    assert error_code(await call(parent_socket, "chat.join", missing)) == "not_found"
    assert typing_of(kid_socket) == [(parent.id, True), (parent.id, False)]
    for recorder in (parent_socket, kid_socket, late_socket):
        await recorder.disconnect()


async def test_a_flood_is_rate_limited_and_the_socket_keeps_working(
    database_url: str, log_dir: Path
) -> None:
    proc, base_url = await asyncio.to_thread(
        web_process,
        database_url,
        log_dir,
        APP_SOCKET_EVENTS_PER_SECOND="2",
        APP_SOCKET_EVENTS_BURST="5",
    )
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as api:
            parent = await signup(api, "Ada")
            kid = await add_member(api, parent, "Kim", "child")
            chat = await create_chat(api, parent, [kid])
        parent_socket, kid_socket = [await connected(base_url, m) for m in (parent, kid)]
        started = time.monotonic()
        for recorder in (parent_socket, kid_socket):
            assert await call(recorder, "chat.join", {"chatId": chat["id"]}) == {"ok": True}

        typing = {"chatId": chat["id"], "typing": True}
        acks = await asyncio.gather(
            *(call(parent_socket, "chat.typing", typing) for _ in range(30))
        )
        elapsed = time.monotonic() - started
        accepted = acks.count({"ok": True})
        refused = [error_code(ack) for ack in acks if ack != {"ok": True}]
        assert refused, acks
        assert set(refused) == {"rate_limited"}
        # The burst (less the join) plus what the bucket refilled meanwhile, and no more.
        assert 1 <= accepted <= 4 + int(2 * elapsed) + 1

        # The connection is still up: once the bucket refills, events go through again.
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (ack := await call(parent_socket, "chat.typing", {**typing, "typing": False})) != {
            "ok": True
        }:
            assert error_code(ack) == "rate_limited"
            assert time.monotonic() < deadline, "the bucket never refilled"
            await asyncio.sleep(0.1)  # poll interval, not synchronisation
        assert parent_socket.client.connected
        # Dropped events were not relayed: Kim saw the accepted ones, then the last one.
        await kid_socket.wait_until(lambda _: (parent.id, False) in typing_of(kid_socket))
        assert typing_of(kid_socket) == [(parent.id, True)] * accepted + [(parent.id, False)]
        for recorder in (parent_socket, kid_socket):
            await recorder.disconnect()
    finally:
        proc.stop()
