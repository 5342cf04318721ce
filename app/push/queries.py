"""The Web Push queue's SQL, all of it: filling, claiming and finishing, housekeeping, operators.

The queue (``push_deliveries``) is filled by the dispatcher's drain loop in the transaction that
marks the outbox events delivered, and drained by its push sender (``dispatcher.push_sender``)
with fenced leases, like the outbox. The conventions are the outbox's (``app.outbox.queries``):
named ``%(name)s`` parameters only, no SQL built from strings (``psycopg.sql`` composes where a
statement embeds a constant of the code's, or an operator's filter varies), and callers import
the statements by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from psycopg import sql

from app.outbox.queries import common_filters
from app.outbox.streams import chat_stream, user_stream

# --- Filling the queue (dispatcher.push_queue, in the drain loop's delivery transaction) ------

_USER_PREFIX = user_stream("")
_CHAT_PREFIX = chat_stream("")
_UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# ENQUEUE's ``user_pattern`` and ``chat_pattern``: the stream names it may cast to a uuid.
USER_STREAM_PATTERN = f"^{re.escape(_USER_PREFIX)}{_UUID_PATTERN}$"
CHAT_STREAM_PATTERN = f"^{re.escape(_CHAT_PREFIX)}{_UUID_PATTERN}$"

# One push per subscription of each recipient with no visible app open. Recipients are the
# users of ``user:<id>`` streams and the members of ``chat:<id>`` rooms (the chat's members at
# delivery time), minus the event's own ``skip_users`` (its actor). Each spec carries its
# event's streams, as the dispatcher claimed them: the outbox is not read again. The presence
# check is ``app.realtime.presence.users_with_visible_app`` in SQL (a visible socket on a live
# node), read once as an anti-join rather than once per recipient. The CASEs make sure only
# well-formed stream names are ever cast. Wakes the push sender with one NOTIFY, only when
# something was queued.
#
# This runs in every delivery transaction, so its plan must stay cheap: a plan estimated above
# ``jit_above_cost`` is JIT-compiled at every execution, some 40 ms the batch's emits wait for
# (tests/push/test_enqueue_plan.py; the drain sessions also run with JIT off).
ENQUEUE = sql.SQL(
    """
WITH spec AS (
    SELECT * FROM jsonb_to_recordset(%(specs)s) AS s(
        event_id bigint, event_type text, payload jsonb, topic text, ttl_seconds integer,
        urgency text, streams jsonb, skip_users jsonb, only_users jsonb)
),
stream AS (
    SELECT spec.event_id,
        CAST(CASE WHEN name ~ %(user_pattern)s THEN substr(name, {user_id_from}) END AS uuid)
            AS user_id,
        CAST(CASE WHEN name ~ %(chat_pattern)s THEN substr(name, {chat_id_from}) END AS uuid)
            AS chat_id
    FROM spec, jsonb_array_elements_text(spec.streams) AS name
),
recipient AS (
    SELECT event_id, user_id FROM stream WHERE user_id IS NOT NULL
    UNION
    SELECT s.event_id, m.user_id FROM stream AS s JOIN chat_members AS m ON m.chat_id = s.chat_id
),
app_visible AS (
    SELECT ps.user_id FROM presence_sockets AS ps
    JOIN realtime_nodes AS n ON n.node_id = ps.node_id
    WHERE ps.visible AND n.expires_at > clock_timestamp()
),
inserted AS (
    INSERT INTO push_deliveries
        (subscription_id, event_id, event_type, payload, topic, ttl_seconds, urgency)
    SELECT sub.id, spec.event_id, spec.event_type, spec.payload, spec.topic, spec.ttl_seconds,
        spec.urgency
    FROM recipient AS rc
    JOIN spec ON spec.event_id = rc.event_id
    JOIN push_subscriptions AS sub ON sub.user_id = rc.user_id
    WHERE NOT (spec.skip_users ? CAST(rc.user_id AS text))
      AND (spec.only_users IS NULL OR spec.only_users ? CAST(rc.user_id AS text))
      AND (sub.expires_at IS NULL OR sub.expires_at > now())
      AND NOT EXISTS (SELECT 1 FROM app_visible AS v WHERE v.user_id = rc.user_id)
    ORDER BY spec.event_id, sub.id
    ON CONFLICT (subscription_id, event_id) DO NOTHING
    RETURNING event_type
)
SELECT event_type, count(*), (SELECT count(pg_notify(%(channel)s, '')))
FROM inserted GROUP BY event_type
"""
).format(
    # Where the id starts in a stream name (substr counts from 1).
    user_id_from=sql.Literal(len(_USER_PREFIX) + 1),
    chat_id_from=sql.Literal(len(_CHAT_PREFIX) + 1),
)

# --- The push sender (dispatcher.push_sender) -------------------------------------------------

# A claimed row's ``next_attempt_at`` is pushed to its lease expiry, so a sender that dies
# leaves rows that simply fall due again.
CLAIM = """
WITH claimable AS (
    SELECT id FROM push_deliveries
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE push_deliveries AS d
SET claimed_by = %(owner)s,
    claim_token = %(token)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    next_attempt_at = now() + make_interval(secs => %(lease_seconds)s),
    attempts = d.attempts + 1
FROM claimable, push_subscriptions AS s
WHERE d.id = claimable.id AND s.id = d.subscription_id
RETURNING d.id, d.event_id, d.event_type, d.payload, d.topic, d.ttl_seconds, d.urgency,
    d.attempts, d.created_at, s.id, s.endpoint, s.p256dh, s.auth
"""

# Only the claim's holder may finish a row (a sender that lost its lease cannot).
# Many pushes at once (answered while the previous marking ran); each only under its own claim.
MARK_SENT = """
UPDATE push_deliveries AS d
SET status = 'sent', sent_at = clock_timestamp(),
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS s(id, token)
WHERE d.id = s.id AND d.claim_token = s.token
RETURNING d.id
"""

MARK_FAILED = """
UPDATE push_deliveries
SET status = CASE WHEN %(dead)s OR attempts >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    next_attempt_at = clock_timestamp() + make_interval(secs => %(delay)s),
    last_error = %(error)s,
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s
RETURNING status, attempts
"""

# 404/410: the browser dropped the subscription. Its queued pushes go with it (cascade).
DROP_SUBSCRIPTION = "DELETE FROM push_subscriptions WHERE id = %(subscription_id)s"

# A push not sent because its push service is paused (a 429): back in the queue for the end of
# the pause, the attempt not counted. Also for the push that got the 429.
DEFER = """
UPDATE push_deliveries
SET next_attempt_at = clock_timestamp() + make_interval(secs => %(delay)s),
    attempts = greatest(attempts - 1, 0),
    last_error = %(error)s,
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'pending'
RETURNING id
"""

# On shutdown: hand unfinished claims back at once, without counting the attempt.
RELEASE = """
UPDATE push_deliveries AS d
SET claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL,
    next_attempt_at = clock_timestamp(), attempts = greatest(d.attempts - 1, 0)
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r(id, token)
WHERE d.id = r.id AND d.claim_token = r.token AND d.status = 'pending'
"""

# --- Housekeeping (dispatcher.jobs) -----------------------------------------------------------

PURGE_SENT = """
DELETE FROM push_deliveries
WHERE id IN (
    SELECT id FROM push_deliveries
    WHERE status = 'sent' AND sent_at < now() - make_interval(secs => %(seconds)s)
    ORDER BY id LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
"""

GAUGES = """
SELECT (SELECT count(*) FROM push_deliveries WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM push_deliveries WHERE status = 'dead') AS dead,
       coalesce(extract(epoch FROM now() - (SELECT min(created_at)
           FROM push_deliveries WHERE status = 'pending')), 0)::float8 AS oldest_pending_seconds
"""

# --- Operators (dispatcher.operations: ``outbox stats``, ``outbox list --push``) --------------

STATS = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       coalesce(extract(epoch FROM now() - min(created_at)
           FILTER (WHERE status = 'pending')), 0)::float8 AS oldest_pending_seconds,
       (SELECT count(*) FROM push_subscriptions) AS subscriptions
FROM push_deliveries
"""

STATS_PER_TYPE = """
SELECT event_type AS type, status, count(*) AS count FROM push_deliveries
GROUP BY event_type, status ORDER BY event_type, status
"""

# An operator's selection of push deliveries, as ``app.outbox.queries.EVENT_FILTERS`` for the
# outbox (composed with its ``filter_where``); ``recipient`` is a ``user:<id>`` stream.
PUSH_FILTERS: Mapping[str, sql.Composable] = {
    **common_filters(
        status=sql.SQL("d.status"),
        event_type=sql.SQL("d.event_type"),
        created_at=sql.SQL("d.created_at"),
    ),
    "recipient": sql.SQL("'user:' || s.user_id::text = %(recipient)s"),
}


def list_deliveries(where: sql.Composable) -> sql.Composed:
    """The newest push deliveries matching ``where`` (``%(limit)s`` of them), with their push
    service's host: the endpoint is a capability URL, so only its push service is shown."""
    return sql.SQL(
        """
SELECT d.id, d.event_id, d.event_type AS type, d.status, d.attempts, d.created_at,
       d.next_attempt_at, d.sent_at, d.last_error, d.urgency, d.ttl_seconds,
       d.topic, s.user_id, split_part(s.endpoint, '/', 3) AS push_service
FROM push_deliveries d JOIN push_subscriptions s ON s.id = d.subscription_id
WHERE {where} ORDER BY d.id DESC LIMIT %(limit)s
"""
    ).format(where=where)
