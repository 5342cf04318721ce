"""Karma events: typed payloads and their recipients, staged in the outbox."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.karma.models import KarmaEntry, KarmaSource
from app.outbox.staging import EventPayload, stage
from app.outbox.streams import user_stream
from app.push.notifications import Notification, push_notification

AwardSource = Literal["grant", "task"]

# Only credits a member earned are announced as awards; claim reservations and refunds reach
# the child inside the claim events instead.
_AWARD_SOURCES: dict[KarmaSource, AwardSource] = {
    KarmaSource.GRANT: "grant",
    KarmaSource.TASK: "task",
}


class KarmaAwarded(EventPayload):
    """A member received karma: a parent's grant or a completed task's reward."""

    event_type = "karma.awarded"
    audience = "the member who received it"
    # The ledger entry (`id` in the karma history), so a client adds it to a history it
    # fetched once only. None in events staged before it was added.
    entry_id: int | None = None
    user_id: uuid.UUID
    amount: int
    reason: str
    source: AwardSource
    new_balance: int
    # None for a task's reward when the task's creator has since left the family.
    granted_by: uuid.UUID | None


# Topic per member: a newer award (with the newer balance) replaces one not yet delivered.
@push_notification(KarmaAwarded, ttl=timedelta(days=1))
def _awarded_notification(event: KarmaAwarded) -> Notification:
    return Notification(
        title=f"+{event.amount} karma",
        body=f"{event.reason} (balance {event.new_balance})",
        about=f"karma:{event.user_id}",
        url="/#karma",
        skip_users=frozenset({event.granted_by}),
    )


def record_awarded(
    *, session: AsyncSession, entry: KarmaEntry, granted_by: uuid.UUID | None
) -> None:
    """Stage ``karma.awarded`` for the credit ``entry`` (a grant or a task reward)."""
    payload = KarmaAwarded(
        entry_id=entry.id,
        user_id=entry.user_id,
        amount=entry.amount,
        reason=entry.reason,
        source=_AWARD_SOURCES[entry.source],
        new_balance=entry.balance_after,
        granted_by=granted_by,
    )
    stage(session, payload, streams=[user_stream(entry.user_id)], family_id=entry.family_id)
