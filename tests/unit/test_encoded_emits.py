"""A pre-serialised emit (``PostgresManager.emit_encoded``, the dispatcher's) puts the message
into the bundle that python-socketio's ``emit`` would have: the same JSON, ASCII only."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from app.outbox.envelope import OutboxEventRow
from app.realtime import pg_manager
from app.realtime.pg_manager import PostgresManager, reaches_a_socket_here


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The payloads of each NOTIFY the manager's blocks send, instead of sending them."""
    notified: list[list[str]] = []

    async def notify(conn: Any, channel: str, payloads: list[str]) -> None:
        notified.append(list(payloads))

    monkeypatch.setattr(pg_manager, "notify", notify)
    return notified


def body(payloads: list[str]) -> str:
    """A bundle's JSON, its chunk headers taken off."""
    return "".join(payload.split(":", 3)[3] for payload in payloads)


def event(payload_text: str) -> OutboxEventRow:
    return OutboxEventRow(
        id=7,
        type="task.created",
        version=1,
        payload_text=payload_text,
        family_id=uuid.uuid4(),
        created_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        attempts=1,
        recipients=[("user:a", 3), ("user:b", 9)],
    )


# Payloads as Postgres prints a jsonb (keys by length, a space after each separator).
@pytest.mark.parametrize(
    "payload_text",
    [
        '{"tags": [1, 2.5, null, true], "title": "Tidy up", "taskId": "t1"}',
        '{"tags": [1, 2.5, null, true], "title": "Spülmaschine ✓ \\"now\\"", "taskId": "t1"}',
    ],
)
async def test_an_encoded_emit_is_the_message_emit_would_have_published(
    sent: list[list[str]], payload_text: str
) -> None:
    emitted_event = event(payload_text)
    manager = PostgresManager("postgresql://unused", write_only=True)
    conn: Any = object()
    async with manager.publishing_in(conn):
        for stream, seq in emitted_event.recipients:
            await manager.emit(emitted_event.type, emitted_event.envelope(stream, seq), room=stream)
    async with manager.publishing_in(conn):
        envelope = emitted_event.envelope_text()
        for stream, seq in emitted_event.recipients:
            manager.emit_encoded(emitted_event.type, envelope.on(stream, seq), room=stream)
    emitted, encoded = (body(payloads) for payloads in sent)
    # ASCII only: a bundle is cut into NOTIFY payloads by character count.
    assert encoded.isascii()
    messages = json.loads(encoded)
    assert messages == json.loads(emitted)
    assert [m["room"] for m in messages] == ["user:a", "user:b"]
    assert messages[0]["data"] == [emitted_event.envelope("user:a", 3)]
    assert messages[0]["binary"] is False


async def test_an_encoded_emit_needs_a_publishing_block() -> None:
    manager = PostgresManager("postgresql://unused", write_only=True)
    with pytest.raises(RuntimeError):
        manager.emit_encoded("task.created", "{}", room="user:a")


def test_a_remote_emit_is_handled_only_where_a_socket_may_get_it() -> None:
    manager = PostgresManager("postgresql://unused")
    manager.rooms = {"/": {"user:a": {"sid1": "eio1"}}}

    def emit_to(room: object, namespace: str | None = "/") -> dict[str, Any]:
        return {"method": "emit", "event": "e", "data": [{}], "namespace": namespace, "room": room}

    assert reaches_a_socket_here(manager, emit_to("user:a"))
    assert reaches_a_socket_here(manager, emit_to("user:a", namespace=None))
    assert not reaches_a_socket_here(manager, emit_to("user:b"))
    assert not reaches_a_socket_here(manager, emit_to("user:a", namespace="/other"))
    # Not an emit (a socket of this process may be joining that room right now).
    assert reaches_a_socket_here(manager, {"method": "enter_room", "room": "user:b", "sid": "s"})
    # Everyone, or several rooms: python-socketio decides.
    assert reaches_a_socket_here(manager, emit_to(None))
    assert reaches_a_socket_here(manager, emit_to(["user:b", "user:c"]))
