"""A python-socketio client manager that shares emits between processes over Postgres NOTIFY."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_string  # a str as a JSON string
from typing import Any

import psycopg
from socketio import AsyncManager

# Not re-exported by the socketio package itself.
from socketio.async_pubsub_manager import AsyncPubSubManager

from app.pg_notify import listen, notify, with_application_name

logger = logging.getLogger(__name__)

Message = dict[str, Any]

# NOTIFY refuses payloads of 8000 bytes or more; the body of a chunk leaves room for its
# header (`<32 hex>:<index>:<count>:`, under 60 bytes even for absurd counts).
MAX_PAYLOAD_BYTES = 8000
CHUNK_BODY_CHARS = 7900


# ensure_ascii makes characters and bytes the same count, so slicing a bundle's JSON can
# neither split a UTF-8 sequence nor overshoot the byte limit.
_JSON = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


class EncodedMessage(str):
    """A message already serialised as JSON, ASCII only (``emit_encoded``)."""


def encode_bundle(
    messages: Sequence[Message | EncodedMessage], *, chunk_chars: int = CHUNK_BODY_CHARS
) -> list[str]:
    """Serialise `messages` once and cut the JSON into headed NOTIFY payloads."""
    # The same text as one json.dumps of the list: its items joined by "," in brackets.
    body = "[" + ",".join(m if isinstance(m, str) else _JSON.encode(m) for m in messages) + "]"
    parts = [body[start : start + chunk_chars] for start in range(0, len(body), chunk_chars)]
    # A fresh id per bundle also keeps Postgres from folding identical notifications
    # sent in one transaction into one.
    bundle_id = uuid.uuid4().hex
    return [f"{bundle_id}:{index}:{len(parts)}:{part}" for index, part in enumerate(parts)]


def reaches_a_socket_here(manager: AsyncManager, message: Message) -> bool:
    """Whether an emit from another process may reach a socket of ``manager``'s: not when it is
    addressed to one room no socket here is in. Every web process hears every emit, and most
    name a user or chat with no socket here (more so with more web processes, or while a
    backlog of offline users' events drains): those are dropped before any task or lookup.
    Any other message (joining a room, say) is always handled."""
    room = message.get("room")
    if message.get("method") != "emit" or not isinstance(room, str):  # or: everyone, or a list
        return True
    return room in manager.rooms.get(message.get("namespace") or "/", {})


@dataclass
class _PartialBundle:
    count: int
    first_seen: float
    parts: dict[int, str] = field(default_factory=dict)


class BundleAssembler:
    """Reassemble chunked bundles from NOTIFY payloads, with a bounded buffer."""

    def __init__(
        self,
        *,
        max_age_seconds: float = 60.0,
        max_pending: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age_seconds = max_age_seconds
        self._max_pending = max_pending
        self._clock = clock
        # Insertion order is arrival order, so the oldest bundles are always first.
        self._pending: dict[str, _PartialBundle] = {}

    def add(self, payload: str) -> list[Message]:
        """Take one payload; return the messages of the bundle it completes, if any."""
        try:
            bundle_id, index_text, count_text, part = payload.split(":", 3)
            index, count = int(index_text), int(count_text)
        except ValueError:
            logger.warning("ignoring malformed notification", extra={"payload": payload[:80]})
            return []
        if not 0 <= index < count:
            logger.warning("ignoring chunk with bad index", extra={"bundle_id": bundle_id})
            return []
        if count == 1:
            return self._decode(bundle_id, part)

        self._evict(self._clock(), making_room=bundle_id not in self._pending)
        bundle = self._pending.get(bundle_id)
        if bundle is None:
            bundle = _PartialBundle(count=count, first_seen=self._clock())
            self._pending[bundle_id] = bundle
        bundle.parts[index] = part
        if len(bundle.parts) < bundle.count:
            return []
        del self._pending[bundle_id]
        return self._decode(bundle_id, "".join(bundle.parts[i] for i in range(bundle.count)))

    def discard_incomplete(self) -> None:
        """Forget partial bundles, e.g. after a reconnect made completing them impossible."""
        if self._pending:
            logger.warning("dropping incomplete bundles", extra={"count": len(self._pending)})
            self._pending.clear()

    def _evict(self, now: float, *, making_room: bool) -> None:
        while self._pending:
            bundle_id, bundle = next(iter(self._pending.items()))
            too_old = now - bundle.first_seen > self._max_age_seconds
            too_many = making_room and len(self._pending) >= self._max_pending
            if not (too_old or too_many):
                return
            logger.warning(
                "dropping incomplete bundle",
                extra={"bundle_id": bundle_id, "received": len(bundle.parts), "of": bundle.count},
            )
            del self._pending[bundle_id]

    def _decode(self, bundle_id: str, body: str) -> list[Message]:
        try:
            messages = json.loads(body)
        except ValueError:
            logger.warning("ignoring undecodable bundle", extra={"bundle_id": bundle_id})
            return []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            logger.warning("ignoring bundle that is not a list of messages")
            return []
        return messages


@dataclass
class _TransactionBuffer:
    owner: PostgresManager
    messages: list[Message | EncodedMessage] = field(default_factory=list)
    closed: bool = False


# The buffer of the `publishing_in` block the current task is inside, if any.
_transaction_buffer: ContextVar[_TransactionBuffer | None] = ContextVar(
    "pg_manager_transaction_buffer", default=None
)


class PostgresManager(AsyncPubSubManager):
    """Client manager whose pub/sub backend is Postgres LISTEN/NOTIFY."""

    name = "postgres"
    keepalive_seconds = 10.0
    reconnect_delay_seconds = 1.0
    publish_timeout_seconds = 2.0

    def __init__(
        self,
        conninfo: str,
        channel: str = "socketio",
        write_only: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger)
        self.conninfo = conninfo
        self._publisher: psycopg.AsyncConnection[Any] | None = None
        self._publisher_lock = asyncio.Lock()

    @asynccontextmanager
    async def publishing_in(self, conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
        """Buffer emits made inside the block; NOTIFY them as one bundle in `conn`'s transaction."""
        if not self.write_only:
            # AsyncPubSubManager.emit delivers to this process's own clients before it
            # publishes, so they would see emits of a transaction that later rolls back.
            raise RuntimeError("publishing_in needs a write_only manager")
        buffer = _TransactionBuffer(owner=self)
        token = _transaction_buffer.set(buffer)
        try:
            yield
        finally:
            buffer.closed = True
            _transaction_buffer.reset(token)
        # Reached on normal exit only: an exception in the block sends nothing.
        if buffer.messages:
            await notify(conn, self.channel, encode_bundle(buffer.messages))

    def emit_encoded(self, event: str, data_json: str, *, room: str) -> None:
        """Inside ``publishing_in``: what ``emit(event, data, room=room)`` would publish, with
        ``data`` given as its JSON text (ASCII only).

        The message is the one python-socketio's ``emit`` builds for one argument, no callback,
        the default namespace, ``binary`` false, so a web process handles it the same and its
        clients get the same packets; but nothing walks ``data`` looking for bytes (JSON text
        has none) or serialises it again. The in-process half of ``emit`` is skipped: a
        write-only manager, the one ``publishing_in`` takes, has no sockets of its own.
        """
        buffer = _transaction_buffer.get()
        if buffer is None or buffer.owner is not self or buffer.closed:
            raise RuntimeError("emit_encoded needs an open publishing_in block")
        # Written out rather than encoded from a dict: only the strings need JSON's escaping.
        message = (
            f'{{"method":"emit","event":{_json_string(event)},"data":[{data_json}],'
            f'"binary":false,"namespace":"/","room":{_json_string(room)},'
            f'"skip_sid":null,"callback":null,"host_id":{_json_string(self.host_id)}}}'
        )
        buffer.messages.append(EncodedMessage(message))

    async def aclose(self) -> None:
        """Close the publishing connection, if one is open."""
        async with self._publisher_lock:
            if self._publisher is not None:
                await self._publisher.close()
                self._publisher = None

    async def _publish(self, data: Message) -> None:
        buffer = _transaction_buffer.get()
        if buffer is not None and buffer.owner is self:
            if buffer.closed:
                # A task spawned inside the block outlived it; dropping silently would lose it.
                raise RuntimeError("emit after its publishing_in block ended")
            buffer.messages.append(data)
            return
        await self._send(encode_bundle([data]))

    async def _send(self, payloads: list[str]) -> None:
        # Bounded, lock wait included: callers publish while holding locks of their own (a
        # presence decision holds its user's advisory lock), so a wedged connection must fail
        # them quickly instead of stalling every socket that connects behind them.
        async with asyncio.timeout(self.publish_timeout_seconds):
            await self._publisher_lock.acquire()
        try:
            async with asyncio.timeout(self.publish_timeout_seconds):
                await self._send_locked(payloads)
        except TimeoutError:
            logger.warning("publishing timed out; dropping the publishing connection")
            if self._publisher is not None:
                await self._publisher.close()
                self._publisher = None
            raise
        finally:
            self._publisher_lock.release()

    async def _send_locked(self, payloads: list[str]) -> None:
        for _attempt in range(2):
            fresh = self._publisher is None or self._publisher.closed
            if fresh or self._publisher is None:
                self._publisher = await psycopg.AsyncConnection.connect(
                    with_application_name(self.conninfo, "socketio-publisher"), autocommit=True
                )
            try:
                await notify(self._publisher, self.channel, payloads)
                return
            except psycopg.OperationalError:
                await self._publisher.close()
                self._publisher = None
                # A connection that just opened failing is not staleness: give up.
                if fresh:
                    raise
                logger.warning("publishing connection lost; reconnecting")

    async def _listen(self) -> AsyncIterator[Message]:
        # Never returns: AsyncPubSubManager._thread stops for good when this generator ends,
        # so reconnecting is left to `listen`, which loops forever.
        assembler = BundleAssembler()

        def dropped() -> None:
            assembler.discard_incomplete()
            self.channel_disconnected()

        async for payload in listen(
            self.conninfo,
            self.channel,
            keepalive_seconds=self.keepalive_seconds,
            reconnect_delay_seconds=self.reconnect_delay_seconds,
            on_connect=self.channel_connected,
            on_disconnect=dropped,
        ):
            for message in assembler.add(payload):
                if message.get("method") != "emit" or message.get("host_id") == self.host_id:
                    yield message
                elif reaches_a_socket_here(self, message):
                    await self._emit_here(message)

    def channel_connected(self) -> None:
        """Called whenever LISTEN is (again) in place; emits sent before may have been lost."""

    def channel_disconnected(self) -> None:
        """Called when the LISTEN connection is lost."""

    async def _emit_here(self, message: Message) -> None:
        """Hand a remote emit to this process's sockets, here rather than through the base class
        (no per-message log line); a failure is logged, and the next message goes on.

        Awaited in turn: the web process's manager (app.realtime.holding) only queues packets on
        its sockets, which never waits, so a whole bundle goes out in one turn of the event loop,
        in order. python-socketio's own ``emit`` waits for a task per recipient instead, and
        would let a busy loop trickle a bundle out one message per turn.
        """
        try:
            await self._handle_emit(message)
        except Exception:
            logger.exception("emit from the message queue failed")
