"""The drain loop: claim a batch, emit it to Socket.IO, mark it delivered; retry what failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import socketio
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from app.outbox import queries
from app.outbox.envelope import OutboxEventRow
from app.outbox.staging import payload_model
from app.realtime.holding import HoldingRedisManager
from app.realtime.pg_manager import PostgresManager
from app.realtime.signals import ResyncOut
from dispatcher import metrics, push_queue
from dispatcher.claims import retry_delay
from dispatcher.liveness import Liveness
from dispatcher.settings import DispatcherSettings

logger = logging.getLogger(__name__)

STREAM_LOCK_CLASS = 7_001  # the advisory-lock namespace of stream delivery
STREAM_LOCK_BUCKETS = 1024


def held_back(
    events: list[OutboxEventRow], first_waiting: dict[str, tuple[int, float]]
) -> dict[int, float]:
    """Events that must wait for an earlier event of one of their streams, with how long.

    ``first_waiting`` maps a stream to the seq of its earliest event still pending elsewhere
    (0 for a stream another dispatcher is delivering right now: all of its events wait) and
    how long that stream's oldest live claim has been in flight, which is how long a held event
    waits before it is claimed again (the floor is applied by the caller). An event held back
    also holds back the later events of each of its own streams (events are visited in id
    order, which is seq order within every stream).
    """
    limit = {stream: seq for stream, (seq, _) in first_waiting.items()}
    waiting: dict[int, float] = {}
    for event in sorted(events, key=lambda e: e.id):
        if any(seq > limit.get(stream, seq) for stream, seq in event.recipients):
            waiting[event.id] = max(
                (
                    first_waiting[stream][1]
                    for stream, _ in event.recipients
                    if stream in first_waiting
                ),
                default=0.0,
            )
            for stream, seq in event.recipients:
                limit[stream] = min(limit.get(stream, seq), seq)
    return waiting


def adapt_claim_size(asked: int, got: int, settings: DispatcherSettings) -> int:
    """The next claim's size after one that asked for ``asked`` rows and got ``got``.

    A full claim means a backlog: the next asks for twice as many (fewer round trips and
    commits per event), up to ``max_batch_size``. A short one means the backlog is drained:
    halve, down to ``batch_size``, so a shallow outbox is claimed in small batches again.
    """
    floor = settings.batch_size
    ceiling = max(settings.max_batch_size, floor)
    if got >= asked:
        return min(asked * 2, ceiling)
    return max(asked // 2, floor)


@dataclass(frozen=True)
class Claim:
    """Rows claimed under ``token`` by a claim that asked for ``asked`` of them, in id order."""

    token: uuid.UUID
    asked: int
    batch: list[OutboxEventRow]


class Worker:
    """Drains the outbox until stopped; any number of workers may run against one database."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[AsyncConnection[Any]],
        manager: socketio.AsyncManager,
        settings: DispatcherSettings,
        wake: asyncio.Event,
        liveness: Liveness,
        push_channel: str | None = None,
    ) -> None:
        self.pool = pool
        self.manager = manager
        self.settings = settings
        self.wake = wake
        # Claims are taken in the name of the liveness session's current owner.
        self.liveness = liveness
        # Set when Web Push is on: finished events queue their pushes, waking this channel.
        self.push_channel = push_channel
        self.stopping = asyncio.Event()
        # Rows the next claim asks for: grows while claims come back full (adapt_claim_size).
        self.claim_size = settings.batch_size
        # In a backlog, the next batch's claim, made while the batch in hand is delivered.
        self._next_claim: asyncio.Task[Claim] | None = None

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run``."""
        self.stopping.set()
        self.wake.set()

    async def run(self) -> None:
        logger.info("dispatcher worker started", extra={"owner": self.liveness.owner})
        while not self.stopping.is_set():
            # Cleared before the claim, so a NOTIFY that lands during it is not lost.
            self.wake.clear()
            asked = self.claim_size
            try:
                handled = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("drain failed; retrying after the poll interval")
                handled = 0
            if handled < asked:
                await self._wait_for_work()
        await self._release_next_claim()
        logger.info("dispatcher worker stopped", extra={"owner": self.liveness.owner})

    async def _wait_for_work(self) -> None:
        # On timeout, the polling fallback: scan anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.settings.poll_interval_seconds)

    async def drain_once(self) -> int:
        """Claim and handle one batch; return how many rows it held (as many as it asked for
        when some were held back: other streams' rows may be claimable right now)."""
        if self._next_claim is not None:
            claim, prefetched = await self._take_next_claim(), True
        else:
            claim, prefetched = await self._claim(uuid.uuid4(), self.claim_size), False
        asked, batch, token = claim.asked, claim.batch, claim.token
        if not batch:
            self.claim_size = adapt_claim_size(asked, 0, self.settings)
            # A claim made before the loop last cleared its wake-up may have missed rows
            # whose NOTIFY came since: look again at once rather than wait for the next one.
            return asked if prefetched else 0
        metrics.BATCH_SIZE.observe(len(batch))
        if len(batch) >= asked and not self.stopping.is_set():
            # A backlog: the next claim runs while this batch is delivered, so Postgres and
            # this process each work while the other would wait. It cannot take this batch's
            # rows (they are leased), and each delivery still checks what is in flight before it.
            size = adapt_claim_size(asked, len(batch), self.settings)
            self._next_claim = asyncio.create_task(self._claim(uuid.uuid4(), size))
        try:
            held_back_count = await self._handle(batch, token)
        except BaseException:
            # Rows still claimed after a failure between the steps (or a cancellation on
            # shutdown) go straight back to the queue instead of waiting out their lease.
            await self._release([e.id for e in batch], token)
            raise
        if held_back_count or prefetched:
            # The held rows wait a moment (the claim size stays: their streams are contended,
            # a larger claim would only hold back more).
            return asked
        self.claim_size = adapt_claim_size(asked, len(batch), self.settings)
        return len(batch)

    async def _take_next_claim(self) -> Claim:
        assert self._next_claim is not None
        task, self._next_claim = self._next_claim, None
        claim = await task
        self.claim_size = claim.asked
        return claim

    async def _release_next_claim(self) -> None:
        """On the way out: hand back the rows of a claim made for a batch that never came."""
        if self._next_claim is None:
            return
        try:
            claim = await self._take_next_claim()
            if claim.batch:
                await self._release([e.id for e in claim.batch], claim.token)
        except Exception:  # its rows, if it took any, wait out their lease instead
            logger.warning("could not hand back the next claim on the way out", exc_info=True)

    async def _claim(self, token: uuid.UUID, limit: int) -> Claim:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                queries.CLAIM_BATCH,
                {
                    "limit": limit,
                    "owner": self.liveness.owner,
                    "token": token,
                    "lease_seconds": self.settings.lease_seconds,
                },
            )
            rows = await cur.fetchall()
        batch = sorted(OutboxEventRow.from_claimed(rows), key=lambda e: e.id)
        return Claim(token=token, asked=limit, batch=batch)

    async def _handle(self, batch: list[OutboxEventRow], token: uuid.UUID) -> int:
        """Deliver what can be, record failures; return how many rows were held back."""
        deliverable: list[OutboxEventRow] = []
        failures: dict[int, str] = {}
        for e in batch:
            if payload_model(e.type, e.version) is None:
                failures[e.id] = f"unknown event type {e.type!r} version {e.version}"
            else:
                deliverable.append(e)
        held_back_count = 0
        if deliverable:
            try:
                held_back_count = await self._deliver(deliverable, token)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any sink failure fails the batch; the rows retry
                logger.warning("emit failed for a batch", exc_info=True)
                failures.update({e.id: f"{type(exc).__name__}: {exc}" for e in deliverable})
        if failures:
            await self._mark_failed([e for e in batch if e.id in failures], failures, token)
        return held_back_count

    async def _deliver(self, events: list[OutboxEventRow], token: uuid.UUID) -> int:
        """Emit and mark the batch in one transaction; return how many rows had to wait."""
        by_id = {e.id: e for e in events}
        streams = sorted({stream for e in events for stream, _ in e.recipients})
        # Pipeline mode: statements whose results are not needed yet travel together, so the
        # transaction costs two round trips. The whole batch is marked delivered in the first,
        # under a savepoint, on the bet that none of it must wait (the usual case): when some
        # must, the mark is rolled back and made again without them (a third round trip).
        # Each wait for results is a Sync, not just a flush: only after a Sync does the server
        # count the session as idle in its transaction, so that its timeout cuts a dispatcher
        # stalled in between.
        async with (
            self.pool.connection() as conn,
            conn.pipeline() as pipeline,
            conn.transaction(),
        ):
            locked_elsewhere = await conn.execute(
                queries.TRY_LOCK_STREAMS,
                {
                    "lock_class": STREAM_LOCK_CLASS,
                    "buckets": STREAM_LOCK_BUCKETS,
                    "streams": streams,
                },
            )
            await conn.execute("SAVEPOINT mark_all")
            marked = await conn.execute(
                queries.MARK_DELIVERED, {"ids": list(by_id), "token": token}
            )
            # Read after the mark: a row of the batch claimed elsewhere up to that moment is
            # seen under its new claim and holds back the batch's later events of its streams.
            cur = await conn.execute(
                queries.EARLIER_IN_FLIGHT,
                {
                    "max_id": max(by_id),
                    "streams": streams,
                    "hold_seconds": self.settings.stream_hold_seconds,
                    "lease_seconds": self.settings.lease_seconds,
                },
            )
            await pipeline.sync()
            first_waiting = {stream: (seq, age) for stream, seq, age in await cur.fetchall()}
            first_waiting.update({row[0]: (0, 0.0) for row in await locked_elsewhere.fetchall()})
            waiting = held_back(events, first_waiting)
            ready = [event_id for event_id in by_id if event_id not in waiting]
            if waiting:
                await conn.execute("ROLLBACK TO SAVEPOINT mark_all")
                floor, ceiling = self.settings.held_back_retry_seconds, self.settings.lease_seconds
                await conn.execute(
                    queries.RELEASE_CLAIM,
                    {
                        "ids": list(waiting),
                        "delays": [min(max(age, floor), ceiling) for age in waiting.values()],
                        "token": token,
                    },
                )
                marked = await conn.execute(queries.MARK_DELIVERED, {"ids": ready, "token": token})
                await pipeline.sync()
            finished = sorted(row[0] for row in await marked.fetchall())
            # Emits become NOTIFYs of this very transaction with the Postgres manager: the
            # rows are marked delivered exactly when the Socket.IO tier gets them.
            async with self._publishing(conn):
                await self._emit([by_id[event_id] for event_id in finished])
            queued = None
            if self.push_channel is not None and finished:
                # Web Push is queued with the handoff, all or nothing; the push sender sends
                # it apart, so a slow push service never holds up this loop.
                queued = await push_queue.enqueue_pushes(
                    conn, [by_id[event_id] for event_id in finished], channel=self.push_channel
                )
        if queued is not None:
            await push_queue.count_enqueued(queued)
        self._record_delivered([by_id[event_id] for event_id in finished])
        lost = set(ready) - set(finished)
        if lost:
            logger.warning(
                "lost the lease on some rows; another dispatcher owns them now",
                extra={"event_ids": sorted(lost)},
            )
        return len(waiting)

    @staticmethod
    def _record_delivered(events: list[OutboxEventRow]) -> None:
        """Count and time the delivered events; per type, not per event, where a count will do
        (a batch in a backlog is a thousand events)."""
        for event_type, count in Counter(event.type for event in events).items():
            metrics.DELIVERED.labels(event_type).inc(count)
        now = datetime.now(UTC)
        debug = logger.isEnabledFor(logging.DEBUG)
        for event in events:
            latency = (now - event.created_at).total_seconds()
            metrics.COMMIT_TO_EMIT.observe(latency)
            if debug:
                logger.debug(
                    "event emitted",
                    extra={
                        "event_id": event.id,
                        "type": event.type,
                        "attempt": event.attempts,
                        "latency_ms": round(latency * 1000, 2),
                    },
                )

    async def _emit(self, events: list[OutboxEventRow]) -> None:
        """Emit each event's envelope to each of its streams, in order."""
        if isinstance(self.manager, PostgresManager):
            # Inside publishing_in: the envelopes go into the bundle as JSON text, serialised
            # once (what the event's streams share once per event), in the message emit would
            # have built.
            for event in events:
                envelope = event.envelope_text()
                for stream, seq in event.recipients:
                    self.manager.emit_encoded(event.type, envelope.on(stream, seq), room=stream)
            return
        for event in events:
            for stream, seq in event.recipients:
                await self.manager.emit(event.type, event.envelope(stream, seq), room=stream)

    @asynccontextmanager
    async def _publishing(self, conn: AsyncConnection[Any]) -> AsyncIterator[None]:
        if isinstance(self.manager, PostgresManager):
            async with self.manager.publishing_in(conn):
                yield
        elif isinstance(self.manager, HoldingRedisManager):
            # Redis: emits go out before the commit, the batch's as one message (a bundle)
            # (at least once; clients dedupe by id).
            async with self.manager.publishing():
                yield
        else:
            yield

    async def _mark_failed(
        self, events: list[OutboxEventRow], errors: dict[int, str], token: uuid.UUID
    ) -> None:
        params = {
            "ids": [e.id for e in events],
            "delays": [
                retry_delay(
                    e.attempts,
                    base_seconds=self.settings.retry_base_seconds,
                    max_seconds=self.settings.retry_max_seconds,
                )
                for e in events
            ],
            "errors": [errors[e.id] for e in events],
            "max_attempts": self.settings.max_attempts,
            "token": token,
        }
        by_id = {e.id: e for e in events}
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(queries.MARK_FAILED, params)
            rows = await cur.fetchall()
            dead_streams = sorted(
                {
                    stream
                    for row in rows
                    if row[2] == "dead"
                    for stream, _ in by_id[row[0]].recipients
                }
            )
            if dead_streams:
                # A dead event leaves a hole no replay can fill: its streams' clients are told
                # (with the Postgres manager, in the very transaction that marks it dead).
                async with self._publishing(conn):
                    for stream in dead_streams:
                        resync = ResyncOut(stream=stream, reason="dead")
                        await self.manager.emit(
                            "resync", resync.model_dump(mode="json"), room=stream
                        )
        for event_id, event_type, status, attempt in rows:
            metrics.FAILED.labels(event_type).inc()
            fields = {
                "event_id": event_id,
                "type": event_type,
                "attempt": attempt,
                "error": errors[event_id],
            }
            if status == "dead":
                metrics.DIED.labels(event_type).inc()
                logger.error("event is dead after its last attempt", extra=fields)
            else:
                logger.warning("event failed; will retry", extra=fields)

    async def _release(self, event_ids: list[int], token: uuid.UUID) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                queries.RELEASE_CLAIM,
                {"ids": event_ids, "delays": [0.0] * len(event_ids), "token": token},
            )
        logger.info("released unfinished claims", extra={"rows": cur.rowcount})
