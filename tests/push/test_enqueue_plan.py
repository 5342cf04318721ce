"""The push enqueue runs inside every delivery transaction, so its plan must stay cheap.

A plan estimated above ``jit_above_cost`` is JIT-compiled on every execution: tens of
milliseconds that the delivery transaction, and so every socket emit of the batch, waits for
(issue 12: commit -> client took ~40 ms instead of ~3 ms once Web Push was configured).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import psycopg
from psycopg import sql

import app.outbox.catalogue  # noqa: F401  (registers the event types and their push policies)
from app.outbox.envelope import OutboxEventRow
from app.outbox.streams import chat_stream, user_stream
from app.push import queries
from dispatcher.push_queue import enqueue_parameters

BATCH = 200  # the dispatcher's default batch size


def karma_award(event_id: int) -> OutboxEventRow:
    """A pushing event, to its member's stream and (to cover both kinds) a chat's."""
    user_id = uuid.uuid4()
    payload = {
        "userId": str(user_id),
        "amount": 5,
        "reason": "Tidied up",
        "source": "grant",
        "newBalance": 5,
        "grantedBy": str(uuid.uuid4()),
    }
    recipients = [(user_stream(user_id), event_id), (chat_stream(uuid.uuid4()), event_id)]
    return OutboxEventRow(
        id=event_id,
        type="karma.awarded",
        version=1,
        payload_text=json.dumps(payload),
        family_id=uuid.uuid4(),
        created_at=datetime.now(UTC),
        attempts=1,
        recipients=recipients,
    )


# A few thousand delivered events, as after a few minutes of use; their tables have no
# statistics yet (autovacuum has not come by), which is where the estimates run highest.
SEED_DELIVERED_EVENTS = """
WITH event AS (
    INSERT INTO outbox_events (type, version, payload, status)
    SELECT 'task.created', 1, '{}', 'delivered' FROM generate_series(1, 5000)
    RETURNING id
)
INSERT INTO outbox_recipients (event_id, stream, seq)
SELECT id, 'user:' || gen_random_uuid(), 1 FROM event
"""


async def test_a_full_batch_is_planned_below_the_jit_threshold(database_url: str) -> None:
    events = [karma_award(event_id) for event_id in range(1, BATCH + 1)]
    params = enqueue_parameters(events, channel="push_deliveries")
    assert params is not None
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(SEED_DELIVERED_EVENTS)
        cur = await conn.execute("SELECT current_setting('jit_above_cost')::float8")
        [threshold] = await cur.fetchone() or [None]
        cur = await conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + queries.ENQUEUE, params)
        [plan] = await cur.fetchone() or [None]
    assert plan[0]["Plan"]["Total Cost"] < threshold
    # The claimed rows carry their streams: the enqueue does not read the outbox again.
    assert "outbox_recipients" not in json.dumps(plan)
