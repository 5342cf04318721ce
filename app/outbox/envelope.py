"""The one event envelope every client receives: the model the catalogue describes, and the
wire form (``OutboxEventRow.envelope``) built from an outbox row and a stream with it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_string  # a str as a JSON string
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, WithJsonSchema

from app.schemas import CamelModel


def _utc_milliseconds(moment: datetime) -> str:
    """``2026-03-01T12:30:05.123Z``: UTC, milliseconds, a ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# JSON as the Postgres manager's bundles carry it: compact, ASCII only.
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))

# On the wire: an RFC 3339 date-time in UTC with milliseconds.
WireMoment = Annotated[
    datetime,
    PlainSerializer(_utc_milliseconds, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class EventEnvelope(CamelModel):
    """The envelope of every event, on the socket and in push messages; `data` varies by type."""

    id: str = Field(
        pattern=r"^evt_[0-9]+$",
        description="The event's id, the same on every stream; clients drop ids already seen.",
    )
    type: str = Field(description="The event type, also the Socket.IO event name.")
    version: int = Field(ge=1, description="The schema version of `data`.")
    stream: str = Field(
        pattern=r"^(user|chat):",
        description="The stream (room) it arrived on: `user:<id>` or `chat:<id>`.",
    )
    seq: int = Field(
        ge=1,
        description="The event's number in its stream; numbers are contiguous, so a gap means "
        "a missed event (docs/delivery.md: wait briefly, then `sync.request`).",
    )
    occurred_at: WireMoment = Field(description="When the writing transaction staged the event.")
    family_id: uuid.UUID | None = Field(description="The family the event belongs to.")
    data: dict[str, Any] = Field(description="The payload of this type and version.")


@dataclass(frozen=True, slots=True)
class OutboxEventRow:
    """An outbox row as the dispatcher and the catch-up read it."""

    id: int
    type: str
    version: int
    # The payload as Postgres prints the jsonb (valid JSON; spaces after separators, any
    # character unescaped): the dispatcher passes it on without decoding it.
    payload_text: str
    family_id: uuid.UUID | None
    created_at: datetime
    attempts: int
    recipients: list[tuple[str, int]]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> OutboxEventRow:
        event_id, type_, version, payload_text, family_id, created_at, attempts, recipients = row
        return cls(
            id=event_id,
            type=type_,
            version=version,
            payload_text=payload_text,
            family_id=family_id,
            created_at=created_at,
            attempts=attempts,
            recipients=[(stream, int(seq)) for stream, seq in recipients or []],
        )

    @classmethod
    def from_claimed(cls, rows: Sequence[tuple[Any, ...]]) -> list[OutboxEventRow]:
        """Rows as the claim returns them, the recipients as jsonb's text: decoded in one go
        for the batch, not one loader call per row (a thousand in a backlog)."""
        recipients = json.loads("[" + ",".join(row[7] or "null" for row in rows) + "]")
        return [
            cls.from_row((*row[:7], pairs)) for row, pairs in zip(rows, recipients, strict=True)
        ]

    @property
    def envelope_id(self) -> str:
        """The event's id in its envelopes, the same on every stream."""
        return f"evt_{self.id}"

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, decoded."""
        payload: dict[str, Any] = json.loads(self.payload_text)
        return payload

    def envelope(self, stream: str, seq: int) -> dict[str, Any]:
        """The envelope as sent on ``stream``, where this event has number ``seq``."""
        # Built, not validated: the row was validated when it was staged.
        envelope = EventEnvelope.model_construct(
            id=self.envelope_id,
            type=self.type,
            version=self.version,
            stream=stream,
            seq=seq,
            occurred_at=self.created_at,
            family_id=self.family_id,
            data=self.payload,
        )
        return envelope.model_dump(mode="json", by_alias=True)

    def payload_json(self) -> str:
        """The payload as JSON text, ASCII only, for ``envelope_text``: Postgres's text as it
        is when it is ASCII (most payloads: no decoding, no encoding), else encoded again."""
        if self.payload_text.isascii():
            return self.payload_text
        return _JSON.encode(self.payload)

    def envelope_text(self) -> EnvelopeText:
        """``envelope`` as JSON text for any of the event's streams, built without the model:
        the dispatcher's and the catch-up's hot path. What every stream shares is serialised
        once, the payload included."""
        family_id = "null" if self.family_id is None else f'"{self.family_id}"'
        return EnvelopeText(
            head=f'{{"id":"{self.envelope_id}","type":{_json_string(self.type)},'
            f'"version":{self.version},',
            tail=f'"occurredAt":"{_utc_milliseconds(self.created_at)}","familyId":{family_id},'
            f'"data":{self.payload_json()}}}',
        )


@dataclass(frozen=True, slots=True)
class EnvelopeText:
    """An event's envelope as JSON text (ASCII only; ``envelope``'s keys, in its order) around
    the two fields that differ from stream to stream: ``stream`` and ``seq``."""

    head: str
    tail: str

    def on(self, stream: str, seq: int) -> str:
        """The envelope as sent on ``stream``, where the event has number ``seq``."""
        return f'{self.head}"stream":{_json_string(stream)},"seq":{seq},{self.tail}'
