"""Client managers that hold back live emits to a socket while it catches up from the outbox.

Replay must reach a reconnecting client before the live events that race it. A held socket is
skipped by live emits (they are buffered for it instead); once its replay is sent, the buffer
is flushed without what the replay already covered, and the hold is lifted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import socketio
from socketio.async_manager import AsyncManager

from app.realtime.pg_manager import PostgresManager

# (room the emit was addressed to, event name, data)
HeldEmit = tuple[str | None, str, Any]


class HoldingManager(AsyncManager):
    """Local delivery with per-socket holds; sits under the pub/sub managers in the MRO."""

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[str, list[HeldEmit]] = {}

    def hold(self, sid: str) -> None:
        """Buffer live emits to ``sid`` from now on."""
        self._held.setdefault(sid, [])

    async def send_direct(self, sid: str, event: str, data: Any, namespace: str = "/") -> None:
        """Send to this process's socket ``sid`` alone, past any hold and any other process."""
        await AsyncManager.emit(self, event, data, namespace, room=sid)

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
        await super().emit(
            event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs
        )


class HoldingPostgresManager(PostgresManager, HoldingManager):
    """The default cross-process manager (Postgres LISTEN/NOTIFY), with holds."""


class HoldingRedisManager(socketio.AsyncRedisManager, HoldingManager):
    """python-socketio's Redis manager, with holds."""

    def __init__(self, url: str, *, channel: str, write_only: bool) -> None:
        # Named explicitly: to mypy the untyped Redis base is Any, so super() would resolve to
        # HoldingManager; at run time the cooperative chain still reaches HoldingManager.
        socketio.AsyncRedisManager.__init__(self, url, channel=channel, write_only=write_only)
