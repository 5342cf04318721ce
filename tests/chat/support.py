"""Helpers of the chat tests: chats and messages over REST, client events over the socket."""

from __future__ import annotations

from typing import Any

import httpx

from doubles.socket_clients import DEADLINE_SECONDS, SocketRecorder
from tests.harness import Member


async def call(recorder: SocketRecorder, event: str, data: Any) -> dict[str, Any]:
    """Send a client event and return the server's ack."""
    ack: dict[str, Any] = await recorder.client.call(event, data, timeout=DEADLINE_SECONDS)
    return ack


def error_code(ack: dict[str, Any]) -> str:
    assert ack["ok"] is False, ack
    code: str = ack["error"]["code"]
    return code


async def create_chat(
    api: httpx.AsyncClient, creator: Member, members: list[Member], name: str = "Family"
) -> dict[str, Any]:
    response = await api.post(
        f"/v1/families/{creator.family_id}/chats",
        headers=creator.headers,
        json={"name": name, "memberIds": [m.id for m in members]},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_message(
    api: httpx.AsyncClient, sender: Member, chat_id: str, body: str
) -> dict[str, Any]:
    response = await api.post(
        f"/v1/chats/{chat_id}/messages", headers=sender.headers, json={"body": body}
    )
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message
