"""The dispatcher's hot SQL, plain and reviewable, with bound parameters only."""

from __future__ import annotations

# Takes the oldest due rows no live claim holds. Rows whose lease expired (their dispatcher
# died) are due again, so reclaiming needs no separate job. SKIP LOCKED lets any number of
# dispatchers claim at once without waiting on each other.
CLAIM_BATCH = """
WITH claimable AS (
    SELECT id FROM outbox_events
    WHERE status = 'pending'
      AND next_attempt_at <= now()
      AND (lease_expires_at IS NULL OR lease_expires_at < now())
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_events AS e
SET claimed_by = %(owner)s,
    claim_token = %(token)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    attempts = e.attempts + 1
FROM claimable
WHERE e.id = claimable.id
RETURNING e.id, e.type, e.version, e.payload, e.family_id, e.created_at, e.attempts,
    (SELECT jsonb_agg(jsonb_build_array(r.stream, r.seq) ORDER BY r.stream)
     FROM outbox_recipients AS r WHERE r.event_id = e.id) AS recipients
"""

# Only the holder of the claim token may finish a row: a dispatcher that lost its lease
# (paused too long) cannot mark rows another dispatcher has since claimed.
MARK_DELIVERED = """
UPDATE outbox_events
SET status = 'delivered', delivered_at = clock_timestamp(),
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE id = ANY(%(ids)s) AND claim_token = %(token)s
RETURNING id
"""

MARK_FAILED = """
WITH failure AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(delays)s::float8[], %(errors)s::text[])
        AS f(id, delay, error)
)
UPDATE outbox_events AS e
SET status = CASE WHEN e.attempts >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => failure.delay),
    last_error = failure.error,
    errors = jsonb_path_query_array(
        e.errors || jsonb_build_array(jsonb_build_object(
            'at', clock_timestamp(), 'attempt', e.attempts,
            'owner', e.claimed_by, 'error', failure.error)),
        '$[last - 19 to last]'),
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
FROM failure
WHERE e.id = failure.id AND e.claim_token = %(token)s
RETURNING e.id, e.type, e.status, e.attempts
"""

# On shutdown: hand unfinished rows back at once, without counting the attempt.
RELEASE_CLAIM = """
UPDATE outbox_events
SET claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL,
    attempts = greatest(attempts - 1, 0)
WHERE id = ANY(%(ids)s) AND claim_token = %(token)s AND status = 'pending'
"""

# Serialises delivery per stream across dispatchers: streams hash into a fixed number of
# advisory-lock buckets (bounding the locks one transaction takes), locked in sorted order.
LOCK_STREAMS = """
SELECT count(pg_advisory_xact_lock(%(lock_class)s, bucket))
FROM (
    SELECT DISTINCT abs(hashtext(stream)) %% %(buckets)s AS bucket
    FROM unnest(%(streams)s::text[]) AS stream
    ORDER BY bucket
) AS buckets
"""

# For each stream of the batch, the first seq held by an earlier event that is due or in flight
# elsewhere: the batch must not overtake it. Rows backing off after a failure do not count, so a
# poison row never blocks its stream. Only pending rows are read (a small, indexed set).
EARLIER_IN_FLIGHT = """
WITH earlier AS MATERIALIZED (
    -- Walks the small pending-only index; delivered rows never enter the picture.
    SELECT id FROM outbox_events
    WHERE status = 'pending'
      AND id < %(max_id)s
      AND NOT (id = ANY(%(ids)s))
      AND next_attempt_at <= now()
)
SELECT r.stream, min(r.seq)
FROM earlier AS e
JOIN outbox_recipients AS r ON r.event_id = e.id
WHERE r.stream = ANY(%(streams)s)
GROUP BY r.stream
"""
