"""The outbox's SQL, all of it: staging, catch-up reads, claims and marks, liveness, operators.

One home, one parameter style: every statement binds its values as named ``%(name)s``
parameters (psycopg's own style; the web process runs its statements, staging and catch-up,
through SQLAlchemy's ``exec_driver_sql``, which hands them to psycopg as they are). Nothing is
built from strings: where a statement embeds another, or an operator's filter varies, it is
composed with ``psycopg.sql``. Callers import the statements by name.

The push queue's SQL lives in ``app.push.queries``.
"""

from __future__ import annotations

from collections.abc import Mapping

from psycopg import sql

# --- Write path (app.outbox.staging) ----------------------------------------------------------

# Everything the outbox needs at commit, in one statement (one round trip, so the stream locks
# are held for as short a time as possible):
# - reserve each stream's numbers in stream order: the row locks serialise writers per stream
#   (seq order == commit order), last until commit, and a fixed lock order cannot deadlock;
# - only then draw the event ids (the InitPlan on `reserved` runs first, and output expressions
#   are evaluated after the ORDER BY), so within every stream id order is seq order too, which
#   the dispatcher relies on;
# - insert the events and their recipients, and NOTIFY once with a constant payload (Postgres
#   folds identical notifications, so the commit-time notify lock is taken once).
WRITE_STAGED_EVENTS = """
WITH staged AS (
    SELECT * FROM jsonb_to_recordset(CAST(%(events)s AS jsonb))
        AS s(ord int, type text, version smallint, payload jsonb, family_id uuid,
             streams text[])
),
wanted AS (
    SELECT stream, count(*) AS n FROM staged, unnest(staged.streams) AS stream
    GROUP BY stream
),
reserved AS (
    INSERT INTO stream_sequences AS q (stream, last_seq)
    SELECT stream, n FROM wanted ORDER BY stream
    ON CONFLICT (stream) DO UPDATE SET last_seq = q.last_seq + excluded.last_seq
    RETURNING stream, last_seq
),
numbered AS (
    SELECT ord, nextval(pg_get_serial_sequence('outbox_events', 'id')) AS id
    FROM staged
    WHERE (SELECT count(*) FROM reserved) > 0
    ORDER BY ord
),
events AS (
    INSERT INTO outbox_events (id, type, version, payload, family_id)
    OVERRIDING SYSTEM VALUE
    SELECT n.id, s.type, s.version, s.payload, s.family_id
    FROM staged AS s JOIN numbered AS n USING (ord)
    RETURNING id
),
recipients AS (
    INSERT INTO outbox_recipients (event_id, stream, seq)
    SELECT n.id, x.stream,
           r.last_seq - w.n + row_number() OVER (PARTITION BY x.stream ORDER BY s.ord)
    FROM staged AS s
    JOIN numbered AS n USING (ord)
    CROSS JOIN LATERAL unnest(s.streams) AS x(stream)
    JOIN reserved AS r ON r.stream = x.stream
    JOIN wanted AS w ON w.stream = x.stream
    RETURNING event_id
)
SELECT (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM recipients) AS recipients,
       CASE WHEN CAST(%(channel)s AS text) IS NOT NULL
            THEN pg_notify(CAST(%(channel)s AS text), '') END AS notified
"""

# --- Catch-up reads (app.outbox.catch_up) -----------------------------------------------------

# One statement, so the head and the rows come from one snapshot: every seq up to the head
# committed with its row, and a missing row can only mean the row was deleted.
CATCH_UP = """
SELECT h.last_seq, x.seq, x.status, x.id, x.type, x.version, x.payload, x.family_id,
       x.created_at, x.attempts
FROM (SELECT coalesce((SELECT last_seq FROM stream_sequences WHERE stream = %(stream)s), 0)
          AS last_seq) AS h
LEFT JOIN LATERAL (
    SELECT r.seq, e.status, e.id, e.type, e.version,
           CASE WHEN e.status = 'delivered' THEN e.payload::text END AS payload,
           e.family_id, e.created_at, e.attempts
    FROM outbox_recipients AS r JOIN outbox_events AS e ON e.id = r.event_id
    WHERE r.stream = %(stream)s AND r.seq > %(after)s
    ORDER BY r.seq
    LIMIT %(limit)s
) AS x ON true
ORDER BY x.seq
"""

# A stream's head: its last committed seq (no row: none yet).
STREAM_HEAD = "SELECT last_seq FROM stream_sequences WHERE stream = %(stream)s"

# --- The drain loop (dispatcher.worker) -------------------------------------------------------

# A batch's lists of ids and streams (a thousand of each in a backlog) go as binary parameters
# (``%(...)b``): psycopg writes a text array literal in Python, escaping every element.

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
RETURNING e.id, e.type, e.version, e.payload::text, e.family_id, e.created_at, e.attempts,
    (SELECT jsonb_agg(jsonb_build_array(r.stream, r.seq) ORDER BY r.stream)
     FROM outbox_recipients AS r WHERE r.event_id = e.id)::text AS recipients
"""

# Only the holder of the claim token may finish a row: a dispatcher that lost its lease
# (paused too long) cannot mark rows another dispatcher has since claimed.
MARK_DELIVERED = """
UPDATE outbox_events
SET status = 'delivered', delivered_at = clock_timestamp(),
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE id = ANY(%(ids)b) AND claim_token = %(token)s
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
SELECT stream FROM unnest(%(streams)b::text[]) AS stream
WHERE NOT pg_try_advisory_xact_lock(%(lock_class)s, abs(hashtext(stream)) %% %(buckets)s)
"""

# For each stream of the batch, the first seq held by an earlier pending event: the batch must
# not overtake it (per-stream order). An event that keeps failing holds its streams only for
# `hold_seconds` after its first failure; later events then go ahead and the client fills the
# gap when it is delivered late, or is told when it dies (docs/delivery.md). Also how long the
# held rows should wait before they are claimed again: as long as the earlier events' live
# claims have been in flight, but not past their expiry (a stalled owner's stream would
# otherwise be claimed and released over and over). Only pending rows are read (a small,
# indexed set). Read in the delivery transaction after the batch is marked delivered: the
# batch's own rows then no longer count, except one claimed elsewhere since (its lease ran out
# mid-batch), which holds its streams like any other.
EARLIER_IN_FLIGHT = """
WITH earlier AS MATERIALIZED (
    -- Walks the small pending-only index; delivered rows never enter the picture.
    SELECT id, lease_expires_at FROM outbox_events
    WHERE status = 'pending'
      AND id < %(max_id)s
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
WHERE r.stream = ANY(%(streams)b)
GROUP BY r.stream
"""

# --- Liveness (dispatcher.liveness) -----------------------------------------------------------

# Each dispatcher holds a shared session-level advisory lock keyed by its owner name for as
# long as its database session lives. Leases held by an owner with no such lock (its process
# died, or its session did) are expired at once, so the next claim takes their rows without
# waiting out the lease; a live but slow owner keeps its lease.
TAKE_LIVENESS_LOCK = "SELECT pg_advisory_lock_shared(%(lock_class)s, hashtext(%(owner)s))"

# The owners that hold a liveness lock (as hashtext keys); embedded in the statements below.
LIVE_OWNER_KEYS = """
SELECT objid FROM pg_locks
WHERE locktype = 'advisory' AND classid = %(lock_class)s::oid AND objsubid = 2 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_LIVE_OWNER_KEYS = sql.SQL(LIVE_OWNER_KEYS)

EXPIRE_DEAD_OWNERS_LEASES = sql.SQL(
    """
UPDATE outbox_events SET lease_expires_at = now()
WHERE status = 'pending' AND lease_expires_at > now()
  AND hashtext(claimed_by)::oid NOT IN ({live_owner_keys})
RETURNING id
"""
).format(live_owner_keys=_LIVE_OWNER_KEYS)

HEARTBEAT = """
INSERT INTO outbox_workers (owner, host, pid) VALUES (%(owner)s, %(host)s, %(pid)s)
ON CONFLICT (owner) DO UPDATE SET heartbeat_at = clock_timestamp()
"""

FORGET_DEAD_WORKERS = sql.SQL(
    """
DELETE FROM outbox_workers WHERE hashtext(owner)::oid NOT IN ({live_owner_keys})
"""
).format(live_owner_keys=_LIVE_OWNER_KEYS)

# Delivery transactions take milliseconds; one open for longer than this belongs to a stalled
# dispatcher, whatever state its session is in.
TERMINATE_STALLED_DELIVERIES = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'dispatcher:%%' AND application_name <> %(own)s
  AND xact_start < now() - make_interval(secs => %(stalled_seconds)s)
"""

# --- Housekeeping (dispatcher.jobs, and the CLI's purge) --------------------------------------

# The cheap numbers for metrics: served by indexes, never a scan of delivered rows.
BACKLOG_GAUGES = """
SELECT (SELECT count(*) FROM outbox_events WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM outbox_events WHERE status = 'dead') AS dead,
       coalesce(extract(epoch FROM now() - (SELECT min(created_at)
           FROM outbox_events WHERE status = 'pending')), 0)::float8
           AS oldest_pending_seconds
"""

# The retention cutoff, read once so every batch of one purge deletes up to the same instant.
PURGE_CUTOFF = "SELECT now() - %(window)s"

PURGE_DELIVERED = """
DELETE FROM outbox_events
WHERE id IN (
    SELECT id FROM outbox_events
    WHERE status = 'delivered' AND delivered_at < %(cutoff)s
    ORDER BY delivered_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
)
"""

# --- Operators (dispatcher.operations: the ``outbox`` CLI) ------------------------------------

STATS = """
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       coalesce(extract(epoch FROM now() - min(created_at)
           FILTER (WHERE status = 'pending')), 0)::float8 AS oldest_pending_seconds
FROM outbox_events
"""

STATS_PER_TYPE = """
SELECT type, status, count(*) AS count FROM outbox_events
GROUP BY type, status ORDER BY type, status
"""


def common_filters(
    *, status: sql.SQL, event_type: sql.SQL, created_at: sql.SQL
) -> dict[str, sql.Composable]:
    """The filters both queues have (status, type, age), on their columns."""
    return {
        "status": sql.SQL("{} = %(status)s").format(status),
        "type": sql.SQL("{} = %(type)s").format(event_type),
        "older_than": sql.SQL("{} < now() - %(older_than)s").format(created_at),
        "newer_than": sql.SQL("{} >= now() - %(newer_than)s").format(created_at),
    }


# An operator's selection of rows (``--status``, ``--type``, ``--older-than``, ``--newer-than``,
# ``--recipient``): each one given adds its clause, its value bound under its own name.
EVENT_FILTERS: Mapping[str, sql.Composable] = {
    **common_filters(
        status=sql.SQL("e.status"), event_type=sql.SQL("e.type"), created_at=sql.SQL("e.created_at")
    ),
    "recipient": sql.SQL(
        "EXISTS (SELECT 1 FROM outbox_recipients r"
        " WHERE r.event_id = e.id AND r.stream = %(recipient)s)"
    ),
}


def filter_where(
    filters: Mapping[str, sql.Composable], selection: object
) -> tuple[sql.Composed, dict[str, object]]:
    """The WHERE condition of the ``filters`` whose field in ``selection`` is set, and their
    values as parameters (also for the push queue's filters)."""
    params = {name: getattr(selection, name) for name in filters}
    params = {name: value for name, value in params.items() if value is not None}
    clauses = [sql.SQL("TRUE"), *(filters[name] for name in params)]
    return sql.SQL(" AND ").join(clauses), params


_LIST_COLUMNS = sql.SQL(
    """
    e.id, e.type, e.version, e.status, e.attempts, e.created_at, e.next_attempt_at,
    e.delivered_at, e.last_error, e.family_id,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(r.stream, r.seq) ORDER BY r.stream), '[]')
     FROM outbox_recipients r WHERE r.event_id = e.id) AS recipients
"""
)


def list_events(where: sql.Composable) -> sql.Composed:
    """The newest rows matching ``where`` (``%(limit)s`` of them)."""
    return sql.SQL(
        "SELECT {columns} FROM outbox_events e WHERE {where} ORDER BY e.id DESC LIMIT %(limit)s"
    ).format(columns=_LIST_COLUMNS, where=where)


def matching_ids(where: sql.Composable) -> sql.Composed:
    """Ids of the rows matching ``where``, oldest first (``%(limit)s``; NULL: all)."""
    return sql.SQL(
        "SELECT e.id FROM outbox_events e WHERE {where} ORDER BY e.id LIMIT %(limit)s"
    ).format(where=where)


# One row with its payload, claim and error history.
GET_EVENT = sql.SQL(
    "SELECT {columns}, e.payload, e.errors, e.claimed_by, e.lease_expires_at"
    " FROM outbox_events e WHERE e.id = %(id)s"
).format(columns=_LIST_COLUMNS)

EVENTS_BY_ID = sql.SQL(
    "SELECT {columns} FROM outbox_events e WHERE e.id = ANY(%(ids)s) ORDER BY e.id"
).format(columns=_LIST_COLUMNS)


def replay(where: sql.Composable) -> sql.Composed:
    """Make the listed rows (``%(ids)s``) that still match ``where`` pending again.

    A pending row under a live lease is being sent right now: clearing its claim would only
    fence out the dispatcher holding it and send the event twice, so replay leaves it alone.
    """
    return sql.SQL(
        """
UPDATE outbox_events AS e
SET status = 'pending', attempts = 0, next_attempt_at = now(), delivered_at = NULL,
    failing_since = NULL, claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE e.id = ANY(%(ids)s)
  AND NOT (e.status = 'pending' AND e.lease_expires_at IS NOT NULL AND e.lease_expires_at > now())
  AND {where}
RETURNING e.id
"""
    ).format(where=where)


# Wakes the dispatchers (replayed rows are due now).
NOTIFY = "SELECT pg_notify(%(channel)s, '')"

# The dispatchers known to the database, oldest first: live (they hold a liveness lock) or not,
# and their live leases.
WORKERS = sql.SQL(
    """
WITH live AS ({live_owner_keys}),
leases AS (
    SELECT claimed_by, count(*) AS leased_rows, min(lease_expires_at) AS earliest_lease_expires_at
    FROM outbox_events
    WHERE status = 'pending' AND lease_expires_at > now() AND claimed_by IS NOT NULL
    GROUP BY claimed_by
)
SELECT w.owner, w.host, w.pid, w.started_at, w.heartbeat_at,
       greatest(extract(epoch FROM clock_timestamp() - w.heartbeat_at), 0)::float8
           AS heartbeat_age_seconds,
       hashtext(w.owner)::oid IN (SELECT objid FROM live) AS live,
       coalesce(l.leased_rows, 0) AS leased_rows,
       l.earliest_lease_expires_at,
       extract(epoch FROM l.earliest_lease_expires_at - now())::float8
           AS earliest_lease_expires_in_seconds
FROM outbox_workers AS w
LEFT JOIN leases AS l ON l.claimed_by = w.owner
ORDER BY w.started_at, w.owner
"""
).format(live_owner_keys=_LIVE_OWNER_KEYS)

# Pending rows that are stuck, and why: a lease that ran out (its dispatcher stalled or died and
# nobody has claimed the row again), a claim by an owner that is not live (its lease is expired
# within about a second while any dispatcher runs), or a failing event (retrying, and holding
# its streams back for a while after its first failure).
STALE = sql.SQL(
    """
WITH live AS ({live_owner_keys}),
checked AS (
    SELECT e.id, e.type, e.attempts, e.claimed_by, e.lease_expires_at,
           extract(epoch FROM e.lease_expires_at - now())::float8 AS lease_expires_in_seconds,
           e.failing_since, e.next_attempt_at, e.last_error, e.created_at,
           array_remove(ARRAY[
               CASE WHEN e.lease_expires_at < now() THEN 'lease_expired' END,
               CASE WHEN e.claimed_by IS NOT NULL
                         AND hashtext(e.claimed_by)::oid NOT IN (SELECT objid FROM live)
                    THEN 'owner_not_live' END,
               CASE WHEN e.failing_since IS NOT NULL THEN 'failing' END
           ], NULL) AS reasons
    FROM outbox_events AS e
    WHERE e.status = 'pending'
)
SELECT * FROM checked WHERE cardinality(reasons) > 0 ORDER BY id LIMIT %(limit)s
"""
).format(live_owner_keys=_LIVE_OWNER_KEYS)
