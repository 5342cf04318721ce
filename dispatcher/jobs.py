"""Scheduled jobs of the dispatcher process (APScheduler): gauges, retention, recurring tasks.

Gauges and retention run for the outbox, and for the Web Push queue when push is on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client import Gauge
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

import app.models  # noqa: F401  (every table: tasks' foreign keys name other domains' tables)
from app.db import create_engine, create_sessionmaker
from app.outbox.staging import notify_channel_info
from app.recurring.generation import generate_due_tasks
from app.settings import Settings
from dispatcher import metrics, operations
from dispatcher.settings import DispatcherSettings

logger = logging.getLogger(__name__)


class _Purge(Protocol):
    """Deletes a queue's finished rows older than a window, a batch at a time; how many."""

    def __call__(
        self, conn: AsyncConnection[Any], *, older_than: timedelta, batch_size: int
    ) -> Awaitable[int]: ...


@dataclass(frozen=True, slots=True)
class Queue:
    """What the gauge and retention jobs do for one queue (the outbox, the push queue)."""

    read_gauges: Callable[[AsyncConnection[Any]], Awaitable[dict[str, Any]]]
    backlog: Gauge
    oldest_pending_age: Gauge
    dead: Gauge
    purge: _Purge
    purged_message: str
    # Also right at start (not only after the first interval).
    at_start: bool = False


OUTBOX = Queue(
    operations.backlog_gauges,
    metrics.BACKLOG,
    metrics.OLDEST_PENDING_AGE,
    metrics.DEAD,
    operations.purge_delivered,
    "purged delivered outbox rows",
)
# At start as well, as when the push sender ran them itself.
PUSH = Queue(
    operations.push_gauges,
    metrics.PUSH_BACKLOG,
    metrics.PUSH_OLDEST_PENDING_AGE,
    metrics.PUSH_DEAD,
    operations.purge_sent_pushes,
    "purged sent push deliveries",
    at_start=True,
)


async def refresh_gauges(
    pool: AsyncConnectionPool[AsyncConnection[Any]], queue: Queue = OUTBOX
) -> None:
    async with pool.connection() as conn:
        gauges = await queue.read_gauges(conn)
    queue.backlog.set(gauges["pending"])
    queue.oldest_pending_age.set(gauges["oldest_pending_seconds"])
    queue.dead.set(gauges["dead"])


async def purge_finished(
    pool: AsyncConnectionPool[AsyncConnection[Any]],
    settings: DispatcherSettings,
    queue: Queue = OUTBOX,
) -> None:
    """Retention: delete the queue's finished rows older than ``DISPATCHER_RETENTION_DAYS``."""
    async with pool.connection() as conn:
        deleted = await queue.purge(
            conn,
            older_than=timedelta(days=settings.retention_days),
            batch_size=settings.purge_batch_size,
        )
    if deleted:
        logger.info(queue.purged_message, extra={"rows": deleted})


async def generate_recurring_tasks(app_settings: Settings, settings: DispatcherSettings) -> None:
    """Create the tasks of every template due up to today (catching up), in one transaction."""
    time_zone = settings.task_generation_time_zone
    today = datetime.now(time_zone).date()
    # The drain pool's connections are autocommit psycopg ones; the generation is ORM work in
    # a transaction of its own. A run is rare, so a one-connection engine per run is enough.
    engine = create_engine(app_settings.database_url, pool_size=1)
    channel = app_settings.outbox_channel if app_settings.outbox_notify else None
    sessionmaker = create_sessionmaker(engine, info=notify_channel_info(channel))
    try:
        async with sessionmaker() as session, session.begin():
            tasks = await generate_due_tasks(
                session=session,
                today=today,
                time_zone=time_zone,
                catch_up_days=settings.task_generation_catch_up_days,
            )
    finally:
        await engine.dispose()
    logger.log(
        logging.INFO if tasks else logging.DEBUG,
        "generated recurring tasks",
        extra={"tasks": len(tasks), "today": today.isoformat()},
    )


def create_scheduler(
    pool: AsyncConnectionPool[AsyncConnection[Any]],
    settings: DispatcherSettings,
    app_settings: Settings,
    *,
    push: bool = False,
) -> AsyncIOScheduler:
    """The dispatcher's periodic jobs; each runs alone (no overlap) and skips missed runs.

    ``push``: the push sender runs, so the push queue's gauges and retention run too.
    """
    scheduler = AsyncIOScheduler()
    for queue in (OUTBOX, PUSH) if push else (OUTBOX,):
        start = {"next_run_time": datetime.now(UTC)} if queue.at_start else {}
        scheduler.add_job(
            refresh_gauges,
            "interval",
            args=[pool, queue],
            seconds=settings.gauge_interval_seconds,
            max_instances=1,
            coalesce=True,
            **start,
        )
        scheduler.add_job(
            purge_finished,
            "interval",
            args=[pool, settings, queue],
            seconds=settings.purge_interval_seconds,
            max_instances=1,
            coalesce=True,
            **start,
        )
    scheduler.add_job(
        generate_recurring_tasks,
        "interval",
        args=[app_settings, settings],
        seconds=settings.task_generation_interval_seconds,
        # Also right at start: a dispatcher that was down catches up before the first interval.
        next_run_time=datetime.now(UTC),
        misfire_grace_time=None,  # late is still right: today's tasks are due all day
        max_instances=1,
        coalesce=True,
    )
    return scheduler
