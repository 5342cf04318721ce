"""The envelope every client receives, built from an outbox row (app/outbox/envelope.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.outbox.envelope import OutboxEventRow

FAMILY = uuid.UUID("6f1c1a52-3c55-4a43-9d59-8a3e8f1c2b7d")


def row(**changes: object) -> tuple[object, ...]:
    """A row as CLAIM_BATCH returns it: id, type, version, payload (jsonb's text), family,
    created, attempts, recipients (a jsonb array of [stream, seq] pairs)."""
    values: dict[str, object] = {
        "id": 42,
        "type": "task.created",
        "version": 1,
        "payload": '{"title": "Tidy up", "taskId": "t1"}',
        "family_id": FAMILY,
        "created_at": datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC),
        "attempts": 2,
        "recipients": [["user:a", 7], ["user:b", 3]],
    } | changes
    return tuple(values.values())


def test_a_row_becomes_an_event_with_its_recipients_as_stream_and_seq_pairs() -> None:
    event = OutboxEventRow.from_row(row())
    assert (event.id, event.type, event.version, event.attempts) == (42, "task.created", 1, 2)
    assert event.recipients == [("user:a", 7), ("user:b", 3)]


def test_an_event_with_no_recipients_has_an_empty_list() -> None:
    assert OutboxEventRow.from_row(row(recipients=None)).recipients == []


def test_claimed_rows_have_their_recipients_decoded_from_jsonb_text() -> None:
    claimed = [
        row(id=1, recipients='[["user:a", 7], ["user:b", 3]]'),
        row(id=2, recipients=None),
        row(id=3, recipients='[["chat:\\"x\\"", 1]]'),
    ]
    events = OutboxEventRow.from_claimed(claimed)
    assert [(e.id, e.recipients) for e in events] == [
        (1, [("user:a", 7), ("user:b", 3)]),
        (2, []),
        (3, [('chat:"x"', 1)]),
    ]


def test_the_envelope_on_one_stream() -> None:
    event = OutboxEventRow.from_row(row())
    assert event.envelope("user:b", 3) == {
        "id": "evt_42",
        "type": "task.created",
        "version": 1,
        "stream": "user:b",
        "seq": 3,
        "occurredAt": "2026-03-01T12:30:05.123Z",
        "familyId": str(FAMILY),
        "data": {"title": "Tidy up", "taskId": "t1"},
    }


def test_occurred_at_is_utc_with_milliseconds_whatever_the_rows_time_zone() -> None:
    paris = timezone(timedelta(hours=1))
    created = datetime(2026, 3, 1, 13, 30, 5, 999999, tzinfo=paris)
    envelope = OutboxEventRow.from_row(row(created_at=created)).envelope("user:a", 1)
    assert envelope["occurredAt"] == "2026-03-01T12:30:05.999Z"


def test_an_event_of_no_family_says_so() -> None:
    envelope = OutboxEventRow.from_row(row(family_id=None)).envelope("user:a", 1)
    assert envelope["familyId"] is None


def test_each_stream_gets_its_own_seq_and_the_same_id() -> None:
    event = OutboxEventRow.from_row(row())
    envelopes = [event.envelope(stream, seq) for stream, seq in event.recipients]
    assert [(e["id"], e["stream"], e["seq"]) for e in envelopes] == [
        ("evt_42", "user:a", 7),
        ("evt_42", "user:b", 3),
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"family_id": None},
        {
            "created_at": datetime(
                2026, 3, 1, 13, 30, 5, 999999, tzinfo=timezone(timedelta(hours=1))
            )
        },
        # As Postgres prints a jsonb: keys by length, a space after each separator.
        {"payload": '{"q": "\\"", "title": "Aufräumen ✓ 🧹", "nested": {"a": [1, null, true]}}'},
        {"payload": "{}"},
        # Stream names that JSON must escape (real ones are `user:<uuid>`, `chat:<uuid>`).
        {"recipients": [['user:"quoted"\\', 1], ["chat:ü", 2]]},
    ],
)
def test_the_envelope_as_json_is_the_envelope_serialised(changes: dict[str, object]) -> None:
    event = OutboxEventRow.from_row(row(**changes))
    for stream, seq in event.recipients:
        text = event.envelope_text().on(stream, seq)
        # The JSON the bundle would have held for the dict (same keys, same order), in ASCII:
        # bundles are cut into NOTIFY payloads by character count.
        assert text.isascii()
        assert json.loads(text) == event.envelope(stream, seq)
        assert list(json.loads(text)) == list(event.envelope(stream, seq))
