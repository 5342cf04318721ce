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

# A failure starts the event's bounded hold on its streams (``failing_since``, see
# EARLIER_IN_FLIGHT); after the last attempt the row is dead and holds nothing.
MARK_FAILED = """
WITH failure AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(delays)s::float8[], %(errors)s::text[])
        AS f(id, delay, error)
)
UPDATE outbox_events AS e
SET status = CASE WHEN e.attempts >= %(max_attempts)s THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => failure.delay),
    failing_since = coalesce(e.failing_since, now()),
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

# Hands rows back without counting the attempt: at once on shutdown, a little later when they
# were held back (so the next claims move on to other streams instead of taking them again).
RELEASE_CLAIM = """
WITH released AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(delays)s::float8[]) AS r(id, delay)
)
UPDATE outbox_events AS e
SET claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL,
    attempts = greatest(e.attempts - 1, 0),
    next_attempt_at = now() + make_interval(secs => released.delay)
FROM released
WHERE e.id = released.id AND e.claim_token = %(token)s AND e.status = 'pending'
"""

# Serialises delivery per stream across dispatchers: streams hash into a fixed number of
# advisory-lock buckets (bounding the locks one transaction takes). Only tried, never waited
# for: a stream another dispatcher is delivering right now is held back, so a stalled
# dispatcher can never stop the others. Returns the streams that could not be locked.
TRY_LOCK_STREAMS = """
SELECT stream FROM unnest(%(streams)s::text[]) AS stream
WHERE NOT pg_try_advisory_xact_lock(%(lock_class)s, abs(hashtext(stream)) %% %(buckets)s)
"""

# For each stream of the batch, the first seq held by an earlier pending event: the batch must
# not overtake it (per-stream order). An event that keeps failing holds its streams only for
# `hold_seconds` after its first failure; later events then go ahead and the client fills the
# gap when it is delivered late, or is told when it dies (docs/delivery.md). Also how long the
# held rows should wait before they are claimed again: as long as the earlier events' live
# claims have been in flight, but not past their expiry (a stalled owner's stream would
# otherwise be claimed and released over and over). Only pending rows are read (a small,
# indexed set).
EARLIER_IN_FLIGHT = """
WITH earlier AS MATERIALIZED (
    -- Walks the small pending-only index; delivered rows never enter the picture.
    SELECT id, lease_expires_at FROM outbox_events
    WHERE status = 'pending'
      AND id < %(max_id)s
      AND NOT (id = ANY(%(ids)s))
      AND (failing_since IS NULL
           OR failing_since > now() - make_interval(secs => %(hold_seconds)s))
)
SELECT r.stream, min(r.seq),
       -- How long its claims have been in flight, but no longer than until they expire.
       coalesce(max(least(
           extract(epoch FROM now() - e.lease_expires_at) + %(lease_seconds)s,
           extract(epoch FROM e.lease_expires_at - now())
       )) FILTER (WHERE e.lease_expires_at > now()), 0)::float8
FROM earlier AS e
JOIN outbox_recipients AS r ON r.event_id = e.id
WHERE r.stream = ANY(%(streams)s)
GROUP BY r.stream
"""

# Liveness (dispatcher.liveness): each dispatcher holds a shared session-level advisory lock
# keyed by its owner name for as long as its database session lives. Leases held by an owner
# with no such lock (its process died, or its session did) are expired at once, so the next
# claim takes their rows without waiting out the lease; a live but slow owner keeps its lease.
TAKE_LIVENESS_LOCK = "SELECT pg_advisory_lock_shared(%(lock_class)s, hashtext(%(owner)s))"

LIVE_OWNER_KEYS = """
SELECT objid FROM pg_locks
WHERE locktype = 'advisory' AND classid = %(lock_class)s::oid AND objsubid = 2 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""

EXPIRE_DEAD_OWNERS_LEASES = f"""
UPDATE outbox_events SET lease_expires_at = now()
WHERE status = 'pending' AND lease_expires_at > now()
  AND hashtext(claimed_by)::oid NOT IN ({LIVE_OWNER_KEYS})
RETURNING id
"""

HEARTBEAT = """
INSERT INTO outbox_workers (owner, host, pid) VALUES (%(owner)s, %(host)s, %(pid)s)
ON CONFLICT (owner) DO UPDATE SET heartbeat_at = clock_timestamp()
"""

FORGET_DEAD_WORKERS = f"""
DELETE FROM outbox_workers WHERE hashtext(owner)::oid NOT IN ({LIVE_OWNER_KEYS})
"""

# Delivery transactions take milliseconds; one open for longer than this belongs to a stalled
# dispatcher (dispatcher.liveness), whatever state its session is in.
TERMINATE_STALLED_DELIVERIES = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'dispatcher:%%' AND application_name <> %(own)s
  AND xact_start < now() - make_interval(secs => %(stalled_seconds)s)
"""
