"""The Socket.IO server: authenticates each connection and puts it in its user and family rooms.

It owns the plumbing every socket shares (authentication, catch-up, presence, the client-event
gate); the domains' client events are registered on it by the composition root (``app.main``)
through ``handlers``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import socketio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.sessions import session_user
from app.auth.tokens import TokenClaims, verify_token
from app.db import statement_session
from app.errors import Unauthorized
from app.outbox.streams import is_stream, user_stream
from app.realtime import metrics
from app.realtime.catch_up import catch_up, requested_last_seq
from app.realtime.client_events import Ack, ClientEventGate, ClientSocket, ok, refusal
from app.realtime.holding import create_client_manager
from app.realtime.presence import Presence, family_room
from app.realtime.signals import RenewRequest, SessionExpired, SyncRequest, VisibilityIn
from app.settings import Settings

logger = logging.getLogger(__name__)


class JsonPacket(socketio.packet.Packet):
    """The Socket.IO packets of a server that sends JSON only (envelopes, signals: nothing of
    this protocol is binary): none walks its data looking for bytes to send as attachments, as
    python-socketio's packets do, every packet, every socket of a fan-out."""

    uses_binary_events = False


# Registers a domain's client events on the server's gate (``app.chat.sockets``, say).
SocketHandlers = Callable[[socketio.AsyncServer, ClientEventGate], None]


def create_socket_server(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    handlers: Sequence[SocketHandlers] = (),
) -> socketio.AsyncServer:
    """A Socket.IO server whose connections must present a valid access token.

    Each of ``handlers`` registers a domain's client events behind the one gate.
    """
    manager = create_client_manager(settings, write_only=False)
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=manager,
        # Unset means the page's own origin only (python-socketio's None), never "any".
        cors_allowed_origins=settings.cors_origins or None,
        # Client frames are small (acks, typing, visibility); bigger ones are refused undecoded.
        max_http_buffer_size=64 * 1024,
        serializer=JsonPacket,
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
    presence = Presence(sio, sessionmaker, settings)
    for register in handlers:
        register(sio, gate)
    expiry_timers: dict[str, asyncio.TimerHandle] = {}
    # The auth session each local socket was opened in: `session.revoked` names sessions.
    socket_sessions: dict[str, str] = {}
    # One catch-up at a time per socket: each holds the socket's live emits until its sync.
    catching_up: dict[str, asyncio.Lock] = {}

    async def send_catch_up(
        sid: str, stream: str, last_seq: int | None, first: Sequence[tuple[str, Any]] = ()
    ) -> None:
        async with catching_up.setdefault(sid, asyncio.Lock()):
            manager.hold(sid)
            await catch_up(
                manager=manager,
                sessionmaker=sessionmaker,
                sid=sid,
                stream=stream,
                last_seq=last_seq,
                cap=settings.catch_up_cap,
                first=first,
            )

    async def welcome(sid: str, stream: str, last_seq: int | None, family_id: uuid.UUID) -> None:
        """A new socket's first messages: who is online, then its catch-up and `sync`."""
        # Read after the socket joined its family room while held: a change that races the
        # read is buffered and reaches the client after the snapshot, never before it.
        try:
            snapshot = await presence.snapshot(family_id)
            first = [("presence.snapshot", snapshot.model_dump(mode="json", by_alias=True))]
        except Exception:
            # Presence is best effort; the catch-up must still happen.
            logger.warning("presence snapshot failed", exc_info=True, extra={"sid": sid})
            first = []
        await send_catch_up(sid, stream, last_seq, first)

    async def sync_request(client: ClientSocket, request: SyncRequest) -> Ack:
        """A client that saw a gap, or was told to resync, asks for its stream after a seq."""
        stream = request.stream or user_stream(client.user_id)
        # Its own stream, or a chat it joined (joining checked membership).
        if not (is_stream(stream) and stream in sio.rooms(client.sid)):
            return refusal("not_joined", "only the own stream or a joined chat can be synced")
        await send_catch_up(client.sid, stream, request.last_seq)
        return ok()

    async def renew(client: ClientSocket, request: RenewRequest) -> Ack:
        """A client whose access token was refreshed hands the new one to its open socket."""
        try:
            claims = await checked_claims(request.token)
        except Unauthorized as exc:
            return refusal(exc.code, exc.message)
        if claims.user_id != client.user_id or str(claims.session_id) != socket_sessions.get(
            client.sid
        ):
            return refusal("unauthorized", "the token is of another user or session")
        expire_at(client.sid, claims)
        return ok()

    async def visibility(client: ClientSocket, signal: VisibilityIn) -> Ack:
        """Whether the socket's app is in front of its user (push skips those who see it)."""
        await presence.set_visible(client.sid, signal.visible)
        return ok()

    gate.on("sync.request", SyncRequest, sync_request)
    gate.on("auth.renew", RenewRequest, renew)
    gate.on("app.visibility", VisibilityIn, visibility)
    gate.on_unknown()

    async def close_revoked(room: str | None, envelope: Any) -> None:
        """`session.revoked` went to a user's sockets here: close those of the ended sessions."""
        if room is None or not isinstance(envelope, dict):
            return
        ended = {str(s) for s in envelope.get("data", {}).get("sessionIds", [])}
        for sid, _ in list(manager.get_participants("/", room)):
            if socket_sessions.get(sid) in ended:
                await sio.disconnect(sid)

    manager.watch("session.revoked", close_revoked)

    async def checked_claims(token: str) -> TokenClaims:
        """The claims of an access token whose user and session still stand."""
        claims = verify_token(token, settings)
        async with statement_session(sessionmaker) as session:
            await session_user(session, claims)
        return claims

    async def expire(sid: str) -> None:
        expired = SessionExpired(reason="token_expired")
        await sio.emit("session.expired", expired.model_dump(mode="json"), to=sid)
        await sio.disconnect(sid)

    def expire_at(sid: str, claims: TokenClaims) -> None:
        """A socket must not outlive its token: close it when the token expires."""
        if (timer := expiry_timers.pop(sid, None)) is not None:
            timer.cancel()
        remaining = (claims.expires_at - datetime.now(UTC)).total_seconds()
        loop = asyncio.get_running_loop()
        expiry_timers[sid] = loop.call_later(
            max(remaining, 0), lambda: sio.start_background_task(expire, sid)
        )

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str):
            raise socketio.exceptions.ConnectionRefusedError("unauthorized")
        try:
            claims = verify_token(token, settings)
        except Unauthorized as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.code) from exc
        stream = user_stream(claims.user_id)
        socket_sessions[sid] = str(claims.session_id)
        # Held before joining its rooms: live events wait until the catch-up has been sent.
        manager.hold(sid)
        await sio.enter_room(sid, stream)
        # The database decides, as on REST: a signature alone does not make a member (a user
        # deleted since, a forged subject, an ended session must not join a family's rooms).
        # Checked once in the user's room, so a revocation that commits after this check
        # reaches the socket as `session.revoked`.
        try:
            await checked_claims(token)
        except Unauthorized as exc:
            socket_sessions.pop(sid, None)
            manager.forget(sid)
            raise socketio.exceptions.ConnectionRefusedError(exc.code) from exc
        await sio.save_session(
            sid, {"user_id": str(claims.user_id), "family_id": str(claims.family_id)}
        )
        await sio.enter_room(sid, family_room(claims.family_id))
        await presence.connected(sid, user_id=claims.user_id, family_id=claims.family_id)
        sio.start_background_task(
            welcome, sid, stream, requested_last_seq(auth, stream), claims.family_id
        )
        expire_at(sid, claims)
        logger.debug("socket connected", extra={"sid": sid, "user_id": str(claims.user_id)})

    async def disconnect(sid: str, reason: str) -> None:
        manager.forget(sid)
        catching_up.pop(sid, None)
        socket_sessions.pop(sid, None)
        await presence.disconnected(sid)
        timer = expiry_timers.pop(sid, None)
        if timer is not None:
            timer.cancel()

    sio.on("connect", connect)
    sio.on("disconnect", disconnect)
    return sio
