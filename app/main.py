"""Builds the ASGI app: FastAPI under /v1, Socket.IO under /socket.io, the web client under /."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import socketio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import app.models  # noqa: F401  (every table: tasks' foreign keys name other domains' tables)
from app.auth.router import router as auth_router
from app.body_limit import BodyLimit
from app.chat.router import router as chat_router
from app.chat.sockets import register_chat_handlers
from app.db import create_engine, create_sessionmaker
from app.errors import ERROR_RESPONSES, ErrorBody, error_body, install_error_handlers
from app.families.router import router as families_router
from app.karma.router import router as karma_router
from app.outbox.asyncapi import router as catalogue_router
from app.outbox.router import router as events_router
from app.outbox.staging import notify_channel_info
from app.push.router import router as push_router
from app.realtime.server import create_socket_server
from app.recurring.router import router as recurring_router
from app.rewards.router import router as rewards_router
from app.settings import Settings, get_settings
from app.tasks.router import router as tasks_router

WEB_CLIENT_DIR = Path(__file__).parent / "web"
# The cyclic garbage collector's first-generation threshold in the web process (CPython's
# default: 700 allocations). Each of thousands of sockets keeps tens of long-lived objects
# (tasks, futures, queues), and with the default every burst of emits sets off collections that
# walk them all: in a fan-out to 3,000 sockets, CPython's collector held most of the web
# process's samples (docs/profiles.md). With 50,000 (the older generations as they were), that
# fan-out's p99 went from 1.1-1.6 s to 0.4-0.5 s (bench/fanout_replay.py --users 3000, on a
# busy machine); reference counting still frees everything that is not in a cycle at once.
GC_FIRST_GENERATION_THRESHOLD = 50_000

logger = logging.getLogger(__name__)


def create_api(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    on_startup: Callable[[], None] = lambda: None,
) -> FastAPI:
    """The REST API; the engine's pool is closed with the app's lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        on_startup()
        try:
            yield
        finally:
            await engine.dispose()

    api = FastAPI(
        title="Family realtime API", version="1.0.0", lifespan=lifespan, responses=ERROR_RESPONSES
    )
    api.state.settings = settings
    api.state.sessionmaker = sessionmaker
    install_error_handlers(api)
    api.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)

    v1 = APIRouter(prefix="/v1")
    for router in (
        auth_router,
        families_router,
        tasks_router,
        recurring_router,
        events_router,
        catalogue_router,
        karma_router,
        rewards_router,
        chat_router,
        push_router,
    ):
        v1.include_router(router)
    api.include_router(v1)

    @api.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @api.get(
        "/readyz",
        tags=["health"],
        response_model=None,
        responses={503: {"model": ErrorBody, "description": "The database is unreachable"}},
    )
    async def readyz(request: Request) -> dict[str, str] | JSONResponse:
        """The process can reach its database."""
        try:
            async with request.app.state.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            # The driver's text names hosts and ports: for the log, not an anonymous caller.
            logger.warning("not ready: the database is unreachable", exc_info=True)
            return JSONResponse(error_body("not_ready", "database unreachable"), status_code=503)
        return {"status": "ready"}

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus: this process's sockets, rooms, manager channel, catch-ups and resyncs."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    api.mount("/", StaticFiles(directory=WEB_CLIENT_DIR, html=True), name="web")
    return api


def create_app(settings: Settings | None = None) -> socketio.ASGIApp:
    """The whole web process as one ASGI app (``uvicorn app.main:create_app --factory``)."""
    settings = settings or get_settings()
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, 10, 10)  # the older generations: default
    # Creating an engine connects nothing; the REST API and the socket handlers share its pool.
    # At most 20 connections, as before (10 + 10 overflow), but all kept once opened: an
    # overflow connection was closed on its return and another opened moments later, 20 a
    # second under 16 concurrent REST writers (bench/rest_throughput.py, docs/profiles.md).
    engine = create_engine(settings.database_url, pool_size=20, max_overflow=0)
    channel = settings.outbox_channel if settings.outbox_notify else None
    sessionmaker = create_sessionmaker(engine, info=notify_channel_info(channel))
    # The composition root: each domain with client events registers them on the server.
    sio = create_socket_server(
        settings,
        sessionmaker,
        handlers=[partial(register_chat_handlers, sessionmaker=sessionmaker)],
    )

    def listen_from_startup() -> None:
        # python-socketio starts its manager's listener on the first connection; started here
        # it is listening before sockets arrive, so their first live emits are not lost.
        if not sio.manager_initialized:
            sio.manager_initialized = True
            sio.manager.initialize()

    api = create_api(settings, engine, sessionmaker, on_startup=listen_from_startup)
    return socketio.ASGIApp(sio, other_asgi_app=api, socketio_path="socket.io")
