"""Client managers that hold back live emits to a socket while it catches up from the outbox.

A catch-up must reach a reconnecting client before the live events that race it. A held socket
is skipped by live emits (they are buffered for it instead); once its catch-up is sent, the
buffer is flushed without what the catch-up already covered, and the hold is lifted.

They also tell their sockets when live events may have been lost on the way to this process:
whenever the channel from the other processes (Postgres LISTEN, Redis SUBSCRIBE) is (re)made,
every local socket gets ``resync`` for each stream it is in, and asks for a catch-up from its
position (docs/delivery.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_string  # a str as a JSON string
from typing import Any

import engineio
import socketio
from redis.exceptions import RedisError
from socketio.async_manager import AsyncManager

from app.outbox.streams import is_stream
from app.realtime import metrics
from app.realtime.pg_manager import PostgresManager, reaches_a_socket_here
from app.realtime.signals import ResyncOut
from app.settings import Settings

logger = logging.getLogger(__name__)

# (room the emit was addressed to, event name, data)
HeldEmit = tuple[str | None, str, Any]
# Called with (room, data) after an event has gone to this process's sockets in the room.
EmitWatcher = Callable[[str | None, Any], Awaitable[None]]


class HoldingManager(AsyncManager):
    """Local delivery with per-socket holds; sits under the pub/sub managers in the MRO."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[str, list[HeldEmit]] = {}
        self._watchers: dict[str, EmitWatcher] = {}
        # Strong references to announcements in flight (the loop keeps only weak ones).
        self._announcing: set[asyncio.Task[None]] = set()
        # The rooms of each socket, (namespace, sid) -> rooms, beside the base class's members
        # of each room: it finds a socket's rooms by scanning every room of the namespace.
        self._rooms_of: dict[tuple[str, str], dict[str | None, None]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: str | None, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault((namespace, sid), {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: str | None) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._rooms_of[(namespace, sid)]

    def get_rooms(self, sid: str, namespace: str) -> list[str]:
        return [room for room in self._rooms_of.get((namespace, sid), ()) if room is not None]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """The base class's, leaving the socket's own rooms instead of scanning them all: with
        10,000 sockets (22,500 rooms) closing at once, that scan was quadratic, and held the
        event loop long enough for the presence removals waiting on it to time out."""
        for room in list(self._rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        # The rest of the base class's bookkeeping, as it does it.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if sid in pending.get(namespace, ()):
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

    def hold(self, sid: str) -> None:
        """Buffer live emits to ``sid`` from now on."""
        self._held.setdefault(sid, [])

    async def send_direct(self, sid: str, event: str, data: Any, namespace: str = "/") -> None:
        """Send to this process's socket ``sid`` alone, past any hold and any other process."""
        await self._send_here(event, data, namespace, room=sid)

    async def send_encoded(
        self, sid: str, messages: Iterable[tuple[str, str]], namespace: str = "/"
    ) -> None:
        """Send ``sid`` alone (past any hold) events whose data is JSON text already, ASCII
        only: (event, data as JSON). Each goes as the Socket.IO EVENT packet python-socketio
        would encode for the decoded data, built from the text: no dict is walked for binary
        parts or encoded again (a catch-up's envelopes, fifty per client in a replay storm)."""
        eio_sid = self.eio_sid_from_sid(sid, namespace)
        if eio_sid is None:
            return  # gone: its disconnect handler is on its way
        prefix = str(socketio.packet.EVENT) + ("" if namespace == "/" else namespace + ",")
        try:
            for event, data_json in messages:
                packet = f"{prefix}[{_json_string(event)},{data_json}]"
                await self.server._send_eio_packet(
                    eio_sid, engineio.packet.Packet(engineio.packet.MESSAGE, packet)
                )
        except engineio.exceptions.EngineIOError:
            pass  # closed meanwhile: its disconnect handler is on its way

    async def _send_here(
        self, event: str, data: Any, namespace: str, room: str | None, skip_sid: Any = None
    ) -> None:
        """``AsyncManager.emit`` without a callback, minus its task per recipient and its wait
        for them all: the packet is encoded once and queued on each socket in turn. Queuing
        never waits (an Engine.IO socket's queue is unbounded; its writer task sends), so this
        takes one turn of the event loop however many sockets are in the room. Those tasks
        were most of the cost of a fan-out and of a catch-up's envelopes, one by one.
        """
        if namespace not in self.rooms:
            return
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self.server.packet_class(
            socketio.packet.EVENT, namespace=namespace, data=[event, *args]
        ).encode()
        packets = [
            engineio.packet.Packet(engineio.packet.MESSAGE, part)
            for part in (encoded if isinstance(encoded, list) else [encoded])
        ]
        skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skipped:
                continue
            try:
                for part in packets:
                    # How python-socketio's own managers hand a packet to Engine.IO.
                    await self.server._send_eio_packet(eio_sid, part)
            except engineio.exceptions.EngineIOError:
                pass  # closed meanwhile: its disconnect handler is on its way

    async def release(
        self, sid: str, skip: Callable[[HeldEmit], bool], namespace: str = "/"
    ) -> None:
        """Flush the buffered emits ``skip`` does not reject, then lift the hold."""
        while pending := self._held.get(sid):
            self._held[sid] = []
            for held in pending:
                if not skip(held):
                    await self.send_direct(sid, held[1], held[2], namespace)
        # No await between the emptiness check above and this: nothing can slip in between.
        self._held.pop(sid, None)

    def forget(self, sid: str) -> None:
        self._held.pop(sid, None)

    def watch(self, event: str, watcher: EmitWatcher) -> None:
        """Call ``watcher`` each time ``event`` went to local sockets (sent by any process)."""
        self._watchers[event] = watcher

    async def announce_channel_lost(self, namespace: str = "/") -> None:
        """Send ``resync`` to every local socket, once per stream room it is in."""
        rooms = [room for room in self.rooms.get(namespace, {}) if isinstance(room, str)]
        streams = [room for room in rooms if is_stream(room)]
        for room in streams:
            await self._send_here(
                "resync",
                ResyncOut(stream=room, reason="channel_lost").model_dump(mode="json"),
                namespace,
                room,
            )
            metrics.RESYNCS.labels("channel_lost").inc()
        if streams:
            logger.warning(
                "manager channel was (re)made; told sockets to resync",
                extra={"streams": len(streams)},
            )

    def channel_connected(self) -> None:
        """The channel from the other processes is (again) in place: local sockets catch up."""
        metrics.CHANNEL_UP.set(1)
        task = asyncio.get_running_loop().create_task(self.announce_channel_lost())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    def channel_disconnected(self) -> None:
        """The channel from the other processes dropped: emits may be lost until it is back."""
        metrics.CHANNEL_UP.set(0)

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: str | None = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: str | None = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if event == "resync" and isinstance(data, dict):
            metrics.RESYNCS.labels(str(data.get("reason"))).inc()
        if self._held and namespace in self.rooms:
            skipped = skip_sid if isinstance(skip_sid, list) else [skip_sid]
            held_here = [
                sid
                for sid, _ in self.get_participants(namespace, room)
                if sid in self._held and sid not in skipped
            ]
            for sid in held_here:
                self._held[sid].append((room, event, data))
            if held_here:
                skip_sid = [*skipped, *held_here]
        if callback is None:
            await self._send_here(event, data, namespace, room, skip_sid)
        else:
            await super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
            )
        if (watcher := self._watchers.get(event)) is not None:
            await watcher(room, data)


class HoldingPostgresManager(PostgresManager, HoldingManager):
    """The default cross-process manager (Postgres LISTEN/NOTIFY), with holds."""

    # PostgresManager's own are no-op hooks, and it comes first in the MRO.
    channel_connected = HoldingManager.channel_connected
    channel_disconnected = HoldingManager.channel_disconnected


@dataclass
class _PublishBuffer:
    owner: HoldingRedisManager
    messages: list[Any] = field(default_factory=list)
    closed: bool = False


# The buffer of the `publishing` block the current task is inside, if any.
_publish_buffer: ContextVar[_PublishBuffer | None] = ContextVar(
    "redis_manager_publish_buffer", default=None
)


class HoldingRedisManager(socketio.AsyncRedisManager, HoldingManager):
    """python-socketio's Redis manager, with holds, and failures that are not swallowed."""

    # Well under the dispatcher's idle-in-transaction timeout: its emits run inside the
    # delivery transaction.
    publish_timeout_seconds = 2.0
    max_resubscribe_delay_seconds = 5.0
    connected: bool  # set by the base class

    def __init__(self, url: str, *, channel: str, write_only: bool) -> None:
        # Named explicitly: to mypy the untyped Redis base is Any, so super() would resolve to
        # HoldingManager; at run time the cooperative chain still reaches HoldingManager.
        socketio.AsyncRedisManager.__init__(
            self,
            url,
            channel=channel,
            write_only=write_only,
            redis_options={"socket_connect_timeout": self.publish_timeout_seconds},
        )

    @asynccontextmanager
    async def publishing(self) -> AsyncIterator[None]:
        """Buffer the emits made inside the block; publish them at its end as one message (the
        dispatcher's batch), instead of one awaited round trip per emit."""
        buffer = _PublishBuffer(owner=self)
        token = _publish_buffer.set(buffer)
        try:
            yield
        finally:
            buffer.closed = True
            _publish_buffer.reset(token)
        # Reached on normal exit only: an exception in the block publishes nothing.
        if buffer.messages:
            await self._publish_all(buffer.messages)

    async def _publish(self, data: Any) -> None:
        buffer = _publish_buffer.get()
        if buffer is not None and buffer.owner is self:
            if buffer.closed:
                # A task spawned inside the block outlived it; dropping silently would lose it.
                raise RuntimeError("emit after its publishing block ended")
            buffer.messages.append(data)
            return
        await self._publish_all([data])

    async def _publish_all(self, messages: list[Any]) -> None:
        # A batch goes out as one message, a JSON array (a bundle): one PUBLISH, and one
        # message for each web process to take in and parse, whatever the batch's size; the
        # web processes' `_listen` hands its emits on one by one. A lone emit stays a plain
        # python-socketio message. The base class logs "giving up" and returns: the
        # dispatcher would then mark the events delivered although no web process got them.
        # Raise instead, so they are retried (a retry may publish some twice: clients dedupe
        # by event id).
        body = self.json.dumps(messages if len(messages) > 1 else messages[0])
        for attempt in range(2):
            try:
                if not self.connected:
                    self._redis_connect()
                async with asyncio.timeout(self.publish_timeout_seconds):
                    await self.redis.publish(self.channel, body)
                return
            except (RedisError, OSError, TimeoutError):
                self.connected = False
                if attempt:
                    raise
                logger.warning("cannot publish to Redis; reconnecting", exc_info=True)

    async def _listen(self) -> AsyncIterator[Any]:
        # The base class retries too, but says nothing when it is subscribed again: whatever
        # was published meanwhile is lost, so the sockets here must catch up.
        channel = self.channel.encode()
        delay = 1.0
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                delay = 1.0
                self.channel_connected()
                async for message in self.pubsub.listen():
                    if (
                        message["channel"] == channel
                        and message["type"] == "message"
                        and "data" in message
                    ):
                        data = message["data"]
                        if data.startswith(b"["):  # a bundle (`_publish_all`)
                            for emit in self.json.loads(data):
                                if reaches_a_socket_here(self, emit):
                                    yield emit
                        else:
                            yield data
            except (RedisError, OSError) as exc:
                self.channel_disconnected()
                logger.warning("Redis subscription lost; resubscribing", extra={"error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_resubscribe_delay_seconds)


def create_client_manager(settings: Settings, *, write_only: bool) -> HoldingManager:
    """The cross-process manager: Postgres LISTEN/NOTIFY by default, Redis when configured.

    The web process's server reads and writes through it; the dispatcher only writes
    (``write_only``), and imports nothing of the server or the domains to get it.
    """
    if settings.socketio_redis_url:
        return HoldingRedisManager(
            settings.socketio_redis_url, channel=settings.socketio_channel, write_only=write_only
        )
    return HoldingPostgresManager(
        settings.database_url, channel=settings.socketio_channel, write_only=write_only
    )
