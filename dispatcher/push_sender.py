"""Web Push: the sender, which drains the push queue from a loop of its own.

The queue (``push_deliveries``) is filled by the drain loop in the very transaction that marks
the events delivered (``dispatcher.push_queue``). The push sender drains it apart from socket
delivery, with its own connection pool, LISTEN connection and HTTP session: a slow or failing
push service never delays a socket emit, and a push retry never re-emits to a socket. Its SQL
is ``app.push.queries``; the queue's housekeeping (gauges, purge of sent rows) runs on the
dispatcher's scheduled jobs (``dispatcher.jobs``).

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
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pywebpush import WebPusher

from app.push import queries
from app.push.endpoints import EndpointNotAllowed, check_endpoint
from app.push.notifications import encoded, without_body
from app.push.vapid import VapidSigner
from app.settings import Settings
from dispatcher import metrics
from dispatcher.claims import process_owner, retry_delay
from dispatcher.listener import wake_on_notify
from dispatcher.settings import DispatcherSettings

logger = logging.getLogger(__name__)


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
        self.owner = process_owner("push")
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
        # Sent pushes waiting to be marked, and the task marking them (``_mark_sent``).
        self._to_mark: list[tuple[ClaimedPush, asyncio.Future[bool]]] = []
        self._marking: asyncio.Task[None] | None = None

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

    def connection_pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        """The sender's own pool (not open yet), its sessions set up as the drain's are.

        No check at checkout (a round trip per claim and per result): a broken connection
        fails its statement, which is retried, and the pool discards it.
        """
        return AsyncConnectionPool(
            self.database_url,
            min_size=1,
            max_size=4,
            kwargs={"autocommit": True, "options": self.settings.session_options()},
            open=False,
        )

    async def run(self) -> None:
        """Send until stopped, on a connection pool, a LISTEN connection and an HTTP session of
        its own (so nothing here competes with the drain loop for a connection)."""
        pool = self.connection_pool()
        connector = aiohttp.TCPConnector(limit=self.settings.push_concurrency, ssl=self.ssl)
        async with (
            pool,
            aiohttp.ClientSession(connector=connector, timeout=self.timeout) as http,
        ):
            self._pool, self._http = pool, http
            listener = asyncio.create_task(
                wake_on_notify(
                    self.database_url,
                    self.settings.push_channel,
                    self.wake,
                    keepalive_seconds=self.settings.listener_keepalive_seconds,
                )
            )
            logger.info("push sender started", extra={"owner": self.owner})
            try:
                await self._loop()
            finally:
                listener.cancel()
                await self._drain()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
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

    async def _claim_and_start(self, limit: int) -> int:
        assert self._pool is not None
        token = uuid.uuid4()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                queries.CLAIM,
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
        if outcome.kind == "sent":
            if await self._mark_sent(item):
                metrics.PUSH_SENT.labels(item.event_type).inc()
                latency = (datetime.now(UTC) - item.created_at).total_seconds()
                metrics.PUSH_QUEUE_TO_SENT.observe(latency)
                logger.debug("push sent", extra=fields)
            else:
                logger.warning("push sent after its lease was lost", extra=fields)
            return
        async with self._pool.connection() as conn:
            if outcome.kind == "gone":
                await conn.execute(
                    queries.DROP_SUBSCRIPTION, {"subscription_id": item.subscription_id}
                )
                metrics.PUSH_SUBSCRIPTIONS_GONE.inc()
                logger.info("push subscription gone; removed", extra=fields)
                return
            if outcome.kind == "paused":
                await self._defer(conn, item, outcome, fields)
                return
            delay = retry_delay(
                item.attempts,
                base_seconds=self.settings.push_retry_base_seconds,
                max_seconds=self.settings.push_retry_max_seconds,
            )
            cur = await conn.execute(
                queries.MARK_FAILED,
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

    async def _mark_sent(self, item: ClaimedPush) -> bool:
        """Mark a sent push, and tell whether it was still this sender's claim.

        One UPDATE marks every push answered while the previous one ran: a statement per push
        was the sender's largest cost after encryption (a pool checkout and a round trip each).
        """
        marked = asyncio.get_running_loop().create_future()
        self._to_mark.append((item, marked))
        if self._marking is None or self._marking.done():
            self._marking = asyncio.create_task(self._mark_waiting())
        result: bool = await marked
        return result

    async def _mark_waiting(self) -> None:
        assert self._pool is not None
        while self._to_mark:
            batch, self._to_mark = self._to_mark, []
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(
                        queries.MARK_SENT,
                        {"ids": [i.id for i, _ in batch], "tokens": [i.token for i, _ in batch]},
                    )
                    ours = {push_id for (push_id,) in await cur.fetchall()}
            except asyncio.CancelledError:
                for _, future in [*batch, *self._to_mark]:
                    future.cancel()
                raise
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for item, future in batch:
                if not future.done():  # its waiter may have been cancelled
                    future.set_result(item.id in ours)

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
            queries.DEFER,
            {"id": item.id, "token": item.token, "delay": delay, "error": outcome.detail},
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
                    queries.RELEASE,
                    {
                        "ids": [i.id for i in unfinished],
                        "tokens": [i.token for i in unfinished],
                    },
                )
            logger.info("released unfinished pushes", extra={"rows": len(unfinished)})
