"""Scheduled jobs of the dispatcher process (APScheduler): gauges and retention."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

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


def create_scheduler(
    pool: AsyncConnectionPool[AsyncConnection[Any]], settings: DispatcherSettings
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
    return scheduler
