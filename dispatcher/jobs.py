"""Scheduled jobs of the dispatcher process (APScheduler): gauges, retention, recurring tasks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
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


async def refresh_gauges(pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
    async with pool.connection() as conn:
        gauges = await operations.backlog_gauges(conn)
    metrics.BACKLOG.set(gauges["pending"])
    metrics.OLDEST_PENDING_AGE.set(gauges["oldest_pending_seconds"])
    metrics.DEAD.set(gauges["dead"])


async def purge_delivered(
    pool: AsyncConnectionPool[AsyncConnection[Any]], settings: DispatcherSettings
) -> None:
    async with pool.connection() as conn:
        deleted = await operations.purge_delivered(
            conn,
            older_than=timedelta(days=settings.retention_days),
            batch_size=settings.purge_batch_size,
        )
    if deleted:
        logger.info("purged delivered outbox rows", extra={"rows": deleted})


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
) -> AsyncIOScheduler:
    """The dispatcher's periodic jobs; each runs alone (no overlap) and skips missed runs."""
    scheduler = AsyncIOScheduler()
    scheduler.add_job(
        refresh_gauges,
        "interval",
        args=[pool],
        seconds=settings.gauge_interval_seconds,
        max_instances=1,
        coalesce=True,
    )
    scheduler.add_job(
        purge_delivered,
        "interval",
        args=[pool, settings],
        seconds=settings.purge_interval_seconds,
        max_instances=1,
        coalesce=True,
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
