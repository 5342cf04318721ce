"""The Socket.IO server: authenticates each connection and puts it in its user and family rooms."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import socketio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.tokens import TokenExpired, verify_token
from app.chat.sockets import register_chat_handlers
from app.errors import Unauthorized
from app.families.models import User
from app.realtime import metrics
from app.realtime.client_events import Ack, ClientEventGate, ClientSocket, ok, refusal
from app.realtime.holding import HoldingManager, HoldingPostgresManager, HoldingRedisManager
from app.realtime.replay import SyncRequest, catch_up, requested_last_seq
from app.realtime.rooms import family_room, is_stream_room, user_room
from app.settings import Settings

logger = logging.getLogger(__name__)


def create_client_manager(settings: Settings, *, write_only: bool) -> HoldingManager:
    """The cross-process manager: Postgres LISTEN/NOTIFY by default, Redis when configured."""
    if settings.socketio_redis_url:
        return HoldingRedisManager(
            settings.socketio_redis_url, channel=settings.socketio_channel, write_only=write_only
        )
    return HoldingPostgresManager(
        settings.database_url, channel=settings.socketio_channel, write_only=write_only
    )


def create_socket_server(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> socketio.AsyncServer:
    """A Socket.IO server whose connections must present a valid access token."""
    manager = create_client_manager(settings, write_only=False)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        # Unset means the page's own origin only (python-socketio's None), never "any".
        cors_allowed_origins=settings.cors_origins or None,
        # Client frames are small (acks, typing, visibility); bigger ones are refused undecoded.
        max_http_buffer_size=64 * 1024,
    )

    # Read when scraped: every socket of this process is in the namespace's None room, and in
    # a room named after itself, which does not count as a room here.
    def count_sockets() -> int:
        return len(manager.rooms.get("/", {}).get(None, {}))

    def count_rooms() -> int:
        rooms = manager.rooms.get("/", {})
        sockets = rooms.get(None, {})
        return sum(1 for room in rooms if room is not None and room not in sockets)

    metrics.SOCKETS.set_function(count_sockets)
    metrics.ROOMS.set_function(count_rooms)
    gate = ClientEventGate(sio, settings)
    presence = register_chat_handlers(sio, gate, sessionmaker, settings)
    expiry_timers: dict[str, asyncio.TimerHandle] = {}
    # One catch-up at a time per socket: each holds the socket's live emits until its sync.
    catching_up: dict[str, asyncio.Lock] = {}

    async def send_catch_up(sid: str, stream: str, last_seq: int | None) -> None:
        async with catching_up.setdefault(sid, asyncio.Lock()):
            manager.hold(sid)
            await catch_up(
                manager=manager,
                sessionmaker=sessionmaker,
                sid=sid,
                stream=stream,
                last_seq=last_seq,
                cap=settings.replay_cap,
            )

    async def sync_request(client: ClientSocket, request: SyncRequest) -> Ack:
        """A client that saw a gap, or was told to resync, asks for its stream after a seq."""
        stream = request.stream or user_room(client.user_id)
        # Its own stream, or a chat it joined (joining checked membership).
        if not (is_stream_room(stream) and stream in sio.rooms(client.sid)):
            return refusal("not_joined", "only the own stream or a joined chat can be synced")
        await send_catch_up(client.sid, stream, request.last_seq)
        return ok()

    gate.on("sync.request", SyncRequest, sync_request)
    gate.on_unknown()

    async def expire(sid: str) -> None:
        await sio.emit("session.expired", {"reason": "token_expired"}, to=sid)
        await sio.disconnect(sid)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        try:
            claims = verify_token(token, settings)
        except TokenExpired as exc:
            raise socketio.exceptions.ConnectionRefusedError("token_expired") from exc
        except Unauthorized as exc:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized") from exc
        # The database decides, as on REST: a signature alone does not make a member (a user
        # deleted since, or a forged subject, must not join a family's rooms).
        async with sessionmaker() as session:
            user = await session.get(User, claims.user_id)
        if user is None or user.family_id != claims.family_id:
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        await sio.save_session(
            sid, {"user_id": str(claims.user_id), "family_id": str(claims.family_id)}
        )
        stream = user_room(claims.user_id)
        # Held before joining its rooms: live events wait until the replay has been sent.
        manager.hold(sid)
        await sio.enter_room(sid, stream)
        await sio.enter_room(sid, family_room(claims.family_id))
        await presence.connected(sid, user_id=claims.user_id, family_id=claims.family_id)
        sio.start_background_task(send_catch_up, sid, stream, requested_last_seq(auth, stream))
        # A socket must not outlive the token that opened it.
        remaining = (claims.expires_at - datetime.now(UTC)).total_seconds()
        loop = asyncio.get_running_loop()
        expiry_timers[sid] = loop.call_later(
            max(remaining, 0), lambda: sio.start_background_task(expire, sid)
        )
        logger.debug("socket connected", extra={"sid": sid, "user_id": str(claims.user_id)})

    async def disconnect(sid: str, reason: str) -> None:
        manager.forget(sid)
        catching_up.pop(sid, None)
        await presence.disconnected(sid)
        timer = expiry_timers.pop(sid, None)
        if timer is not None:
            timer.cancel()

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    return sio
