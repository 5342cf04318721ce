"""Web Push: queue the pushes of finished events, and send them from a loop of their own.

The queue (``push_deliveries``) is filled by the drain loop in the very transaction that marks
the events delivered (``enqueue_pushes``), so a push is queued exactly when its event reaches
the Socket.IO tier. The push sender drains it apart from socket delivery, with its own
connection pool, LISTEN connection and HTTP session: a slow or failing push service never
delays a socket emit, and a push retry never re-emits to a socket.

Claims are fenced leases, as for the outbox: ``FOR UPDATE SKIP LOCKED``, an owner unique to the
process start, a token per claim. A claimed row's ``next_attempt_at`` is pushed to its lease
expiry, so a sender that dies leaves rows that simply fall due again.

A 429 pauses its push service (the endpoint's origin: scheme, host and port) in this sender
until the service's ``Retry-After`` (``RATE_LIMIT_*`` below bound it): the push and every push
to that service claimed meanwhile are put back for the end of the pause without counting an
attempt, while pushes to other services go on. The pause lives in the process: each dispatcher
learns it from its own first 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import socket
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pywebpush import WebPusher

from app.outbox.envelope import OutboxEventRow
from app.outbox.streams import chat_stream, user_stream
from app.pg_notify import listen
from app.push.endpoints import EndpointNotAllowed, check_endpoint
from app.push.notifications import delivery_specs, encoded, without_body
from app.push.vapid import VapidSigner
from app.settings import Settings
from dispatcher import metrics
from dispatcher.settings import DispatcherSettings

logger = logging.getLogger(__name__)

UUID_PATTERN = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
USER_PREFIX = user_stream("")
CHAT_PREFIX = chat_stream("")

# One push per subscription of each recipient with no visible app open. Recipients are the
# users of ``user:<id>`` streams and the members of ``chat:<id>`` rooms (the chat's members at
# delivery time), minus the event's own ``skip_users`` (its actor). The presence check is
# ``app.realtime.presence.users_with_visible_app`` in SQL: a visible socket on a live node.
# The CASEs make sure only well-formed stream names are ever cast. Wakes the push sender with
# one NOTIFY, only when something was queued.
ENQUEUE = f"""
WITH spec AS (
    SELECT * FROM jsonb_to_recordset(%(specs)s) AS s(
        event_id bigint, event_type text, payload jsonb, topic text, ttl_seconds integer,
        urgency text, skip_users jsonb, only_users jsonb)
),
stream AS (
    SELECT r.event_id,
        CAST(CASE WHEN r.stream ~ %(user_pattern)s
             THEN substr(r.stream, {len(USER_PREFIX) + 1}) END AS uuid) AS user_id,
        CAST(CASE WHEN r.stream ~ %(chat_pattern)s
             THEN substr(r.stream, {len(CHAT_PREFIX) + 1}) END AS uuid) AS chat_id
    FROM outbox_recipients AS r
    WHERE r.event_id IN (SELECT event_id FROM spec)
),
recipient AS (
    SELECT event_id, user_id FROM stream WHERE user_id IS NOT NULL
    UNION
    SELECT s.event_id, m.user_id FROM stream AS s JOIN chat_members AS m ON m.chat_id = s.chat_id
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
      AND NOT EXISTS (
          SELECT 1 FROM presence_sockets AS ps
          JOIN realtime_nodes AS n ON n.node_id = ps.node_id
          WHERE ps.user_id = rc.user_id AND ps.visible AND n.expires_at > clock_timestamp())
    ORDER BY spec.event_id, sub.id
    ON CONFLICT (subscription_id, event_id) DO NOTHING
    RETURNING event_type
)
SELECT event_type, count(*), (SELECT count(pg_notify(%(channel)s, '')))
FROM inserted GROUP BY event_type
"""

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
MARK_SENT = """
UPDATE push_deliveries
SET status = 'sent', sent_at = clock_timestamp(),
    claimed_by = NULL, claim_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s
RETURNING id
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


async def enqueue_pushes(
    conn: AsyncConnection[Any], events: Sequence[OutboxEventRow], *, channel: str
) -> int:
    """Queue the pushes of ``events`` in the caller's transaction; return how many."""
    specs = delivery_specs(events)
    if not specs:
        return 0
    cur = await conn.execute(
        ENQUEUE,
        {
            "specs": Jsonb(specs),
            "user_pattern": f"^{re.escape(USER_PREFIX)}{UUID_PATTERN}$",
            "chat_pattern": f"^{re.escape(CHAT_PREFIX)}{UUID_PATTERN}$",
            "channel": channel,
        },
    )
    total = 0
    for event_type, count, _ in await cur.fetchall():
        metrics.PUSH_ENQUEUED.labels(event_type).inc(count)
        total += count
    return total


class _NoRedirects:
    """The HTTP session as pywebpush uses it (``post`` only), never following a redirect.

    A 3xx from an allowed push service would otherwise carry the signed, encrypted request to
    any host it names; the push is answered by the status instead (and dies, as a 4xx does).
    """

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self._http = http

    def post(self, url: str, **kwargs: Any) -> Any:
        return self._http.post(url, allow_redirects=False, **kwargs)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (delay in seconds, or an HTTP date) as seconds from ``now``."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


# How long a 429 pauses its push service: its Retry-After, at least the minimum (a 429 never
# becomes a busy loop) and at most the maximum (or DISPATCHER_PUSH_RETRY_MAX_SECONDS if lower);
# the default when it names no time.
RATE_LIMIT_MIN_SECONDS = 1.0
RATE_LIMIT_DEFAULT_SECONDS = 60.0
RATE_LIMIT_MAX_SECONDS = 900.0


def rate_limit_pause(retry_after: float | None, settings: DispatcherSettings) -> float:
    """How many seconds a 429 with this ``Retry-After`` (in seconds) pauses its push service."""
    wanted = RATE_LIMIT_DEFAULT_SECONDS if retry_after is None else retry_after
    ceiling = min(RATE_LIMIT_MAX_SECONDS, settings.push_retry_max_seconds)
    return min(max(wanted, RATE_LIMIT_MIN_SECONDS), ceiling)


def origin_of(endpoint: str) -> str:
    """The push service of an endpoint, as a 429 pauses it: scheme, host and port."""
    url = urlsplit(endpoint)
    host = (url.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    return f"{url.scheme}://{host}:{url.port or 443}"


def push_retry_delay(attempt: int, settings: DispatcherSettings) -> float:
    """Exponential backoff with jitter, so failing pushes do not retry in lockstep."""
    ceiling = min(
        settings.push_retry_max_seconds, settings.push_retry_base_seconds * 2 ** (attempt - 1)
    )
    return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class ClaimedPush:
    """A claimed push delivery with its subscription."""

    id: int
    token: uuid.UUID
    event_id: int
    event_type: str
    payload: dict[str, Any]
    topic: str | None
    ttl_seconds: int
    urgency: str
    attempts: int
    created_at: datetime
    subscription_id: uuid.UUID
    endpoint: str
    p256dh: str
    auth: str

    @classmethod
    def from_row(cls, token: uuid.UUID, row: tuple[Any, ...]) -> ClaimedPush:
        return cls(row[0], token, *row[1:])


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a push service's answer means for the delivery."""

    # "paused": not sent, or answered 429; back in the queue after ``retry_after`` seconds, the
    # attempt not counted.
    kind: Literal["sent", "retry", "dead", "gone", "paused"]
    detail: str
    status: int | None = None
    retry_after: float | None = None


class PushSender:
    """Sends queued pushes until stopped; any number of senders may run against one database."""

    def __init__(
        self,
        *,
        database_url: str,
        settings: DispatcherSettings,
        signer: VapidSigner,
        allowlist: Sequence[str],
    ) -> None:
        self.database_url = database_url
        self.settings = settings
        self.signer = signer
        self.allowlist = allowlist
        self.owner = f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}:push"
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.timeout = aiohttp.ClientTimeout(total=settings.push_timeout_seconds)
        # Built here so a bad CA file stops the dispatcher at start.
        self.ssl = ssl.create_default_context()
        if settings.push_ca_file is not None:
            self.ssl.load_verify_locations(cafile=str(settings.push_ca_file))
        self._in_flight: dict[asyncio.Task[None], ClaimedPush] = {}
        # Push services paused by a 429: origin -> loop time the pause ends.
        self._paused: dict[str, float] = {}
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._http: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls, app_settings: Settings, settings: DispatcherSettings
    ) -> PushSender | None:
        """A sender, or ``None`` when no VAPID private key is configured (push is off)."""
        if app_settings.vapid_private_key is None:
            return None
        signer = VapidSigner(
            app_settings.vapid_private_key.get_secret_value(), app_settings.vapid_subject
        )
        return cls(
            database_url=app_settings.database_url,
            settings=settings,
            signer=signer,
            allowlist=app_settings.push_endpoint_allowlist,
        )

    def stop(self) -> None:
        """Stop claiming; let the requests in flight finish (up to their timeout), then return."""
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        """Send until stopped, on a connection pool, a LISTEN connection and an HTTP session of
        its own (so nothing here competes with the drain loop for a connection)."""
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.database_url,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
            open=False,
        )
        connector = aiohttp.TCPConnector(limit=self.settings.push_concurrency, ssl=self.ssl)
        async with (
            pool,
            aiohttp.ClientSession(connector=connector, timeout=self.timeout) as http,
        ):
            self._pool, self._http = pool, http
            listener = asyncio.create_task(self._listen())
            housekeeping = asyncio.create_task(self._housekeeping())
            logger.info("push sender started", extra={"owner": self.owner})
            try:
                await self._loop()
            finally:
                listener.cancel()
                housekeeping.cancel()
                await self._drain()
                for task in (listener, housekeeping):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        logger.info("push sender stopped", extra={"owner": self.owner})

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            # Cleared before the claim, so a NOTIFY that lands during it is not lost.
            self.wake.clear()
            free = self.settings.push_concurrency - len(self._in_flight)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._claim_and_start(free)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("push claim failed; retrying after the poll interval")
            if free <= 0 or claimed < free:
                # Woken by a NOTIFY, a finished request (a free slot), or the poll timeout.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval_seconds)

    async def _listen(self) -> None:
        def connected() -> None:
            self.wake.set()  # LISTEN is in place: scan for what was queued meanwhile

        async for _ in listen(
            self.database_url,
            self.settings.push_channel,
            keepalive_seconds=self.settings.listener_keepalive_seconds,
            on_connect=connected,
        ):
            self.wake.set()

    async def _claim_and_start(self, limit: int) -> int:
        assert self._pool is not None
        token = uuid.uuid4()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                CLAIM,
                {
                    "limit": limit,
                    "owner": self.owner,
                    "token": token,
                    "lease_seconds": self.settings.push_lease_seconds,
                },
            )
            rows = await cur.fetchall()
        for row in rows:
            item = ClaimedPush.from_row(token, row)
            task = asyncio.create_task(self._deliver(item))
            self._in_flight[task] = item
            task.add_done_callback(self._finished)
        return len(rows)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self.wake.set()  # a slot is free

    async def _deliver(self, item: ClaimedPush) -> None:
        outcome = await self.send(item)
        try:
            await self._record(item, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lease runs out and the push is sent again: at least once.
            logger.exception(
                "recording a push outcome failed",
                extra={"push_id": item.id, "event_id": item.event_id, "outcome": outcome.kind},
            )

    def _pause_left(self, origin: str) -> float:
        """Seconds until the push service's pause ends (0: not paused)."""
        ends = self._paused.get(origin)
        if ends is None:
            return 0.0
        left = ends - asyncio.get_running_loop().time()
        if left <= 0:
            del self._paused[origin]
            return 0.0
        return left

    def _pause(self, origin: str, seconds: float) -> float:
        """Pause the push service for ``seconds`` (or longer, if it already is); return how long."""
        now = asyncio.get_running_loop().time()
        for other in [o for o, ends in self._paused.items() if ends <= now]:
            del self._paused[other]  # forget pauses that are over
        ends = max(self._paused.get(origin, now), now + seconds)
        self._paused[origin] = ends
        return ends - now

    async def send(self, item: ClaimedPush) -> Outcome:
        """Send one push; a 413 is retried once without the body text; nothing while its push
        service is paused by a 429."""
        try:
            # Again at send time: the allowlist may have changed since the browser subscribed.
            check_endpoint(item.endpoint, self.allowlist)
        except EndpointNotAllowed as exc:
            return Outcome("dead", f"endpoint not allowed: {exc.message}")
        origin = origin_of(item.endpoint)
        left = self._pause_left(origin)
        if left > 0:
            detail = f"not sent: {origin} answered HTTP 429, paused for {left:.1f} s more"
            return Outcome("paused", detail, retry_after=left)
        message = item.payload
        shrunk = False
        while True:
            try:
                status, retry_after, text = await self._post(item, message)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
                return Outcome("retry", detail)
            except Exception as exc:
                logger.exception("sending a push failed", extra={"push_id": item.id})
                return Outcome("retry", f"{type(exc).__name__}: {exc}")
            detail = f"HTTP {status}" + (f": {text[:200]}" if text else "")
            if 200 <= status < 300:
                return Outcome("sent", detail, status)
            if status in (404, 410):
                return Outcome("gone", detail, status)
            if status == 413 and not shrunk:
                message, shrunk = without_body(message), True
                continue
            if status == 429:
                asked = retry_after_seconds(retry_after, datetime.now(UTC))
                paused = self._pause(origin, rate_limit_pause(asked, self.settings))
                logger.warning(
                    "push service rate-limited; paused",
                    extra={"origin": origin, "retry_after": retry_after, "pause_s": paused},
                )
                return Outcome("paused", f"{detail} (paused {paused:.1f} s)", status, paused)
            if status >= 500:
                return Outcome("retry", detail, status)
            # Any other 4xx (a bad VAPID token, a malformed request), or a redirect, fails
            # again if repeated.
            return Outcome("dead", detail, status)

    async def _post(
        self, item: ClaimedPush, message: dict[str, Any]
    ) -> tuple[int, str | None, str]:
        assert self._http is not None
        pusher = WebPusher(
            {"endpoint": item.endpoint, "keys": {"p256dh": item.p256dh, "auth": item.auth}},
            aiohttp_session=_NoRedirects(self._http),
        )
        headers = {**self.signer.headers_for(item.endpoint), "Urgency": item.urgency}
        if item.topic:
            headers["Topic"] = item.topic
        loop = asyncio.get_running_loop()
        started = loop.time()
        # aiohttp's timeout covers the request and reading the answer; this one anything else.
        async with asyncio.timeout(self.settings.push_timeout_seconds + 1):
            response = await pusher.send_async(
                encoded(message),
                headers,
                ttl=item.ttl_seconds,
                content_encoding="aes128gcm",
                timeout=self.timeout,
            )
            text = await response.text()
        metrics.PUSH_REQUEST_SECONDS.observe(loop.time() - started)
        status: int = response.status
        return status, response.headers.get("Retry-After"), text

    async def _record(self, item: ClaimedPush, outcome: Outcome) -> None:
        assert self._pool is not None
        fields: dict[str, Any] = {
            "push_id": item.id,
            "event_id": item.event_id,
            "type": item.event_type,
            "attempt": item.attempts,
            "status": outcome.status,
            "detail": outcome.detail,
        }
        async with self._pool.connection() as conn:
            if outcome.kind == "sent":
                cur = await conn.execute(MARK_SENT, {"id": item.id, "token": item.token})
                if cur.rowcount:
                    metrics.PUSH_SENT.labels(item.event_type).inc()
                    latency = (datetime.now(UTC) - item.created_at).total_seconds()
                    metrics.PUSH_QUEUE_TO_SENT.observe(latency)
                    logger.debug("push sent", extra=fields)
                else:
                    logger.warning("push sent after its lease was lost", extra=fields)
                return
            if outcome.kind == "gone":
                await conn.execute(DROP_SUBSCRIPTION, {"subscription_id": item.subscription_id})
                metrics.PUSH_SUBSCRIPTIONS_GONE.inc()
                logger.info("push subscription gone; removed", extra=fields)
                return
            if outcome.kind == "paused":
                await self._defer(conn, item, outcome, fields)
                return
            delay = min(
                push_retry_delay(item.attempts, self.settings), self.settings.push_retry_max_seconds
            )
            cur = await conn.execute(
                MARK_FAILED,
                {
                    "id": item.id,
                    "token": item.token,
                    "dead": outcome.kind == "dead",
                    "max_attempts": self.settings.push_max_attempts,
                    "delay": delay,
                    "error": outcome.detail,
                },
            )
            row = await cur.fetchone()
        reason = str(outcome.status) if outcome.status is not None else "error"
        metrics.PUSH_FAILED.labels(item.event_type, reason).inc()
        if row is None:
            logger.warning("push failed after its lease was lost", extra=fields)
        elif row[0] == "dead":
            metrics.PUSH_DIED.labels(item.event_type).inc()
            logger.error("push is dead", extra=fields)
        else:
            logger.warning("push failed; will retry", extra={**fields, "delay_s": round(delay, 3)})

    async def _defer(
        self,
        conn: AsyncConnection[Any],
        item: ClaimedPush,
        outcome: Outcome,
        fields: dict[str, Any],
    ) -> None:
        """Put a push back for the end of its push service's pause, the attempt not counted."""
        pause = outcome.retry_after or 0.0
        # Never sooner than the push service asked; a little jitter later, so the pushes waiting
        # for it do not all fall due at one instant.
        delay = pause + random.uniform(0, min(1.0, pause / 10))
        cur = await conn.execute(
            DEFER, {"id": item.id, "token": item.token, "delay": delay, "error": outcome.detail}
        )
        if outcome.status is not None:
            metrics.PUSH_FAILED.labels(item.event_type, str(outcome.status)).inc()
        if cur.rowcount == 0:
            logger.warning("push deferred after its lease was lost", extra=fields)
        else:
            logger.debug("push waits for its push service", extra={**fields, "delay_s": delay})

    async def _drain(self) -> None:
        """On stop: wait for the requests in flight (each ends by its timeout), release the rest."""
        if not self._in_flight:
            return
        tasks = list(self._in_flight)
        items = dict(self._in_flight)
        _, pending = await asyncio.wait(tasks, timeout=self.settings.push_timeout_seconds + 2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        unfinished = [items[task] for task in pending]
        if unfinished and self._pool is not None:
            async with self._pool.connection() as conn:
                await conn.execute(
                    RELEASE,
                    {
                        "ids": [i.id for i in unfinished],
                        "tokens": [i.token for i in unfinished],
                    },
                )
            logger.info("released unfinished pushes", extra={"rows": len(unfinished)})

    async def _housekeeping(self) -> None:
        """Gauges of the push queue, and the purge of sent rows past the retention window."""
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            try:
                assert self._pool is not None
                async with self._pool.connection() as conn:
                    cur = await conn.execute(GAUGES)
                    pending, dead, oldest = await cur.fetchone() or (0, 0, 0.0)
                    metrics.PUSH_BACKLOG.set(pending)
                    metrics.PUSH_DEAD.set(dead)
                    metrics.PUSH_OLDEST_PENDING_AGE.set(oldest)
                    if loop.time() >= next_purge:
                        next_purge = loop.time() + self.settings.purge_interval_seconds
                        await self._purge(conn)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("push housekeeping failed", exc_info=True)
            await asyncio.sleep(self.settings.gauge_interval_seconds)

    async def _purge(self, conn: AsyncConnection[Any]) -> None:
        window = timedelta(days=self.settings.retention_days).total_seconds()
        total = 0
        while True:
            cur = await conn.execute(
                PURGE_SENT, {"seconds": window, "batch": self.settings.purge_batch_size}
            )
            total += cur.rowcount
            if cur.rowcount < self.settings.purge_batch_size:
                break
        if total:
            logger.info("purged sent push deliveries", extra={"rows": total})
