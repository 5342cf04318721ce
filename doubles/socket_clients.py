"""Socket.IO clients of the realtime protocol (docs/delivery.md), for tests and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import socketio

DEADLINE_SECONDS = 15.0


@dataclass
class SocketRecorder:
    """A real Socket.IO client over TCP that records every event it receives."""

    base_url: str
    token: str
    # The outbox events (envelopes with a ``seq``); ephemeral signals are only in ``received``.
    events: list[tuple[str, Any]] = field(default_factory=list)
    syncs: list[dict[str, Any]] = field(default_factory=list)
    # The server's notices that the stream has a hole the client must ask about.
    resyncs: list[dict[str, Any]] = field(default_factory=list)
    # Everything, in arrival order.
    received: list[tuple[str, Any]] = field(default_factory=list)
    client: socketio.AsyncClient = field(init=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("*", self._record)

    async def _record(self, event: str, data: Any) -> None:
        self.received.append((event, data))
        if event == "sync":
            self.syncs.append(data)
        elif event == "resync":
            self.resyncs.append(data)
        elif isinstance(data, dict) and "seq" in data:
            self.events.append((event, data))
        self._changed.set()

    async def connect(self, last_seq: int | None = None) -> None:
        auth: dict[str, Any] = {"token": self.token}
        if last_seq is not None:
            auth["lastSeq"] = last_seq
        await self.client.connect(
            self.base_url, auth=auth, transports=["websocket"], wait_timeout=10
        )

    async def request_sync(self, last_seq: int) -> Any:
        """Ask the server to catch the stream up after ``last_seq`` (answered by a ``sync``)."""
        return await self.client.call("sync.request", {"lastSeq": last_seq}, timeout=10)

    def envelopes(self) -> list[dict[str, Any]]:
        """The outbox events received, in arrival order."""
        return [data for _, data in self.events]

    async def disconnect(self) -> None:
        await self.client.disconnect()

    def of_type(self, event_type: str) -> list[Any]:
        return [data for name, data in self.events if name == event_type]

    async def wait_until(
        self, condition: Callable[[list[tuple[str, Any]]], bool], within: float = DEADLINE_SECONDS
    ) -> None:
        async with asyncio.timeout(within):
            while not condition(self.events):
                self._changed.clear()
                await self._changed.wait()


@dataclass
class StreamFollower(SocketRecorder):
    """A client that keeps the gap contract of docs/delivery.md on its user stream.

    Its position is the highest seq up to which it has every event. Events after a gap wait in
    ``ahead``; a gap still open after ``gap_wait`` seconds, and every ``resync``, make it send
    ``sync.request`` from its position. A ``sync`` with ``recovered: false`` stands for a
    refetch of its state (counted in ``refetches``), after which it takes the given position.
    """

    gap_wait: float = 0.5
    position: int | None = None
    ahead: set[int] = field(default_factory=set)
    seen_ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    refetches: int = 0
    # The highest position a refetch took: the refetched state covers every seq up to it.
    refetched_through: int = 0
    # sync.requests sent for a gap left open, and for a ``resync``; those the server refused.
    gap_requests: int = 0
    resync_requests: int = 0
    refused_requests: int = 0
    # When each event id first arrived (monotonic clock), for commit -> client latency.
    arrived: dict[str, float] = field(default_factory=dict)
    # Events that arrived with a lower seq than one received before them.
    out_of_order: int = 0
    _highest_seen: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _gap_check: asyncio.Task[None] | None = None

    @functools.cached_property
    def stream(self) -> str:
        """The user stream it follows (from its token's subject)."""
        return f"user:{jwt.decode(self.token, options={'verify_signature': False})['sub']}"

    async def _record(self, event: str, data: Any) -> None:
        if isinstance(data, dict) and "seq" in data and event not in ("sync", "resync"):
            if data["id"] in self.seen_ids:
                self.duplicates += 1
                return
            self.seen_ids.add(data["id"])
            self.arrived[data["id"]] = time.monotonic()
            if data["seq"] < self._highest_seen:
                self.out_of_order += 1
            self._highest_seen = max(self._highest_seen, data["seq"])
        await super()._record(event, data)
        if event == "sync":
            self._synced(data)
        elif event == "resync":
            self._spawn(self._request(resync=True))
        elif isinstance(data, dict) and data.get("stream") == self.stream:
            self._arrived(data["seq"])

    def _arrived(self, seq: int) -> None:
        if self.position is None or seq > self.position + 1:
            self.ahead.add(seq)
            self._watch_gap()
        elif seq == self.position + 1:
            self.position = seq
            self._absorb()

    def _synced(self, sync: dict[str, Any]) -> None:
        if not sync["recovered"]:
            self.refetches += 1
            if sync["lastSeq"] is not None:
                self.position = sync["lastSeq"]
                self.refetched_through = max(self.refetched_through, sync["lastSeq"])
        elif sync["lastSeq"] is not None:
            self.position = max(self.position or 0, sync["lastSeq"])
        self._absorb()

    def _absorb(self) -> None:
        assert self.position is not None
        while self.position + 1 in self.ahead:
            self.position += 1
        self.ahead = {seq for seq in self.ahead if seq > self.position}
        if self.ahead:
            self._watch_gap()

    def _watch_gap(self) -> None:
        if self._gap_check is None or self._gap_check.done():
            self._gap_check = self._spawn(self._check_gap())

    async def _check_gap(self) -> None:
        await asyncio.sleep(self.gap_wait)
        if self.ahead and self.position is not None:
            await self._request(resync=False)

    async def _request(self, *, resync: bool) -> None:
        if self.position is None or not self.client.connected:
            return
        if resync:
            self.resync_requests += 1
        else:
            self.gap_requests += 1
        with contextlib.suppress(socketio.exceptions.SocketIOError, TimeoutError):
            ack = await self.request_sync(self.position)
            self.refused_requests += not (isinstance(ack, dict) and ack.get("ok"))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def reconnect(self, base_url: str | None = None) -> None:
        """Connect again (to ``base_url``, if given) from the position reached so far."""
        with contextlib.suppress(socketio.exceptions.SocketIOError):
            await self.client.disconnect()
        self.base_url = base_url or self.base_url
        self.client = socketio.AsyncClient(reconnection=False)
        self.client.on("*", self._record)
        await self.connect(last_seq=self.position)
