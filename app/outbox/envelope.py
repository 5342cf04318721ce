"""The one event envelope every client receives, built from an outbox row and a stream."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class OutboxEventRow:
    """An outbox row as the dispatcher and the catch-up read it."""

    id: int
    type: str
    version: int
    payload: dict[str, Any]
    family_id: uuid.UUID | None
    created_at: datetime
    attempts: int
    recipients: list[tuple[str, int]]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> OutboxEventRow:
        event_id, type_, version, payload, family_id, created_at, attempts, recipients = row
        return cls(
            id=event_id,
            type=type_,
            version=version,
            payload=payload,
            family_id=family_id,
            created_at=created_at,
            attempts=attempts,
            recipients=[(stream, int(seq)) for stream, seq in recipients or []],
        )

    def envelope(self, stream: str, seq: int) -> dict[str, Any]:
        """The envelope as sent on ``stream``, where this event has number ``seq``."""
        return {
            "id": f"evt_{self.id}",
            "type": self.type,
            "version": self.version,
            "stream": stream,
            "seq": seq,
            "occurredAt": self.created_at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "familyId": str(self.family_id) if self.family_id else None,
            "data": self.payload,
        }
