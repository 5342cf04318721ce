"""A pre-serialised emit (``PostgresManager.emit_encoded``, the dispatcher's) puts the very
message into the bundle that python-socketio's ``emit`` would have."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from app.outbox.envelope import OutboxEventRow
from app.realtime import pg_manager
from app.realtime.pg_manager import PostgresManager


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


EVENT = OutboxEventRow(
    id=7,
    type="task.created",
    version=1,
    payload={"taskId": "t1", "title": "Spülmaschine ✓", "tags": [1, 2.5, None, True]},
    family_id=uuid.uuid4(),
    created_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    attempts=1,
    recipients=[("user:a", 3), ("user:b", 9)],
)


async def test_an_encoded_emit_is_the_message_emit_would_have_published(
    sent: list[list[str]],
) -> None:
    manager = PostgresManager("postgresql://unused", write_only=True)
    conn: Any = object()
    async with manager.publishing_in(conn):
        for stream, seq in EVENT.recipients:
            await manager.emit(EVENT.type, EVENT.envelope(stream, seq), room=stream)
    async with manager.publishing_in(conn):
        payload_json = EVENT.payload_json()
        for stream, seq in EVENT.recipients:
            envelope = EVENT.envelope_json(stream, seq, payload_json)
            manager.emit_encoded(EVENT.type, envelope, room=stream)
    emitted, encoded = (body(payloads) for payloads in sent)
    assert encoded == emitted
    messages = json.loads(encoded)
    assert [m["room"] for m in messages] == ["user:a", "user:b"]
    assert messages[0]["data"] == [EVENT.envelope("user:a", 3)]
    assert messages[0]["binary"] is False


async def test_an_encoded_emit_needs_a_publishing_block() -> None:
    manager = PostgresManager("postgresql://unused", write_only=True)
    with pytest.raises(RuntimeError):
        manager.emit_encoded("task.created", "{}", room="user:a")
