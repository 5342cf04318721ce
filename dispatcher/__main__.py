"""``python -m dispatcher``: the outbox drain loop, its wake-up listener and scheduled jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from prometheus_client import start_http_server
from psycopg_pool import AsyncConnectionPool
from pythonjsonlogger.json import JsonFormatter

import app.outbox.catalogue  # noqa: F401  (registers every event type the dispatcher may emit)
from app.pg_notify import with_application_name
from app.realtime.holding import create_client_manager
from app.settings import Settings, get_settings
from dispatcher import metrics
from dispatcher.jobs import create_scheduler
from dispatcher.listener import wake_on_notify
from dispatcher.liveness import Liveness, drain_session_name
from dispatcher.push_sender import PushSender
from dispatcher.settings import DispatcherSettings
from dispatcher.worker import Worker

logger = logging.getLogger("dispatcher")


def configure_logging(settings: DispatcherSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler], force=True)
    # APScheduler logs every run of the 5-second gauge job at INFO: keep only its problems.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


async def run(app_settings: Settings, settings: DispatcherSettings) -> None:
    """Run until SIGTERM/SIGINT, then finish the batch in hand and exit."""
    manager = create_client_manager(app_settings, write_only=True)
    wake = asyncio.Event()
    pool = AsyncConnectionPool(
        with_application_name(app_settings.database_url, drain_session_name()),
        min_size=2,
        max_size=4,
        # A broken connection fails its drain, which is retried, and the pool discards it; no
        # extra round trip to check each checkout.
        kwargs={
            "autocommit": True,
            "options": settings.session_options(),
        },
        open=False,
    )
    liveness = Liveness(
        app_settings.database_url,
        interval_seconds=settings.liveness_interval_seconds,
        stalled_transaction_seconds=settings.stalled_transaction_seconds,
    )
    async with pool:
        # Web Push: the worker queues pushes, a sender loop of their own sends them.
        pusher = PushSender.from_settings(app_settings, settings)
        push_channel = settings.push_channel if app_settings.web_push_enabled else None
        worker = Worker(
            pool=pool,
            manager=manager,
            settings=settings,
            wake=wake,
            liveness=liveness,
            push_channel=push_channel,
        )
        if pusher is None:
            logger.info("web push sender off: no VAPID private key configured")

        def stop() -> None:
            worker.stop()
            if pusher is not None:
                pusher.stop()

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        scheduler = create_scheduler(pool, settings, app_settings, push=pusher is not None)
        scheduler.start()
        listener = asyncio.create_task(
            wake_on_notify(
                app_settings.database_url,
                app_settings.outbox_channel,
                wake,
                keepalive_seconds=settings.listener_keepalive_seconds,
                up=metrics.LISTENER_UP,
            )
        )
        keeping_alive = asyncio.create_task(liveness.run())
        pushing = asyncio.create_task(pusher.run()) if pusher is not None else None
        if pushing is not None:
            # A push sender that dies takes the process down (its error is raised below).
            pushing.add_done_callback(lambda _: worker.stop())
        try:
            await worker.run()
        finally:
            if pusher is not None and pushing is not None:
                pusher.stop()
                await pushing
            scheduler.shutdown(wait=False)
            for task in (listener, keeping_alive):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def main() -> None:
    app_settings = get_settings()
    settings = DispatcherSettings()
    configure_logging(settings)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        logger.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    if not app_settings.outbox_notify:
        logger.info("outbox NOTIFY is off: relying on polling alone")
    asyncio.run(run(app_settings, settings))


if __name__ == "__main__":
    main()
