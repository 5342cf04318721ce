"""Client-originated socket events: one gate for all of them.

Every one is answered through its ack with ``{"ok": true}`` or
``{"ok": false, "error": {"code", "message"}}``, and passes the same gate first: a token bucket
per socket (a flood is refused with ``rate_limited`` and dropped, the connection stays up),
then a size limit, then validation of the payload.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import socketio
from pydantic import BaseModel, ValidationError

from app.errors import AppError, Unauthorized
from app.realtime.rate_limit import TokenBucket
from app.settings import Settings

logger = logging.getLogger(__name__)

Ack = dict[str, Any]
PayloadT = TypeVar("PayloadT", bound=BaseModel)

# Kept in the Socket.IO session, so the bucket lives and dies with its socket.
RATE_BUCKET_KEY = "client_events.bucket"


def ok() -> Ack:
    return {"ok": True}


def refusal(code: str, message: str) -> Ack:
    return {"ok": False, "error": {"code": code, "message": message}}


@dataclass(frozen=True, slots=True)
class ClientSocket:
    """The socket an event came from, and its authenticated user."""

    sid: str
    user_id: uuid.UUID


Handler = Callable[[ClientSocket, PayloadT], Awaitable[Ack]]


def _encoded_size(data: Any) -> int | None:
    """The payload's size as JSON in bytes; None if it is not JSON (e.g. binary)."""
    try:
        return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return None


def _describe(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
    ]
    return "invalid payload: " + "; ".join(problems[:5])


class ClientEventGate:
    """Registers client events behind the per-socket rate limit and the payload checks."""

    def __init__(self, sio: socketio.AsyncServer, settings: Settings) -> None:
        self._sio = sio
        self._rate = settings.socket_events_per_second
        self._burst = settings.socket_events_burst
        self._max_bytes = settings.socket_max_payload_bytes

    def on(self, event: str, model: type[PayloadT], handler: Handler[PayloadT]) -> None:
        """Handle ``event`` with ``handler`` once the payload passed the gate as a ``model``."""

        async def handle(sid: str, *args: Any) -> Ack:
            data = args[0] if len(args) == 1 else list(args)
            try:
                return await self._dispatch(event, sid, data, model, handler)
            except AppError as exc:
                return refusal(exc.code, exc.message)
            except Exception:
                logger.exception("socket event failed", extra={"event": event, "sid": sid})
                return refusal("internal_error", "the event could not be handled")

        self._sio.on(event, handle)

    def on_unknown(self) -> None:
        """Answer events nobody handles with an error ack (they count against the limit too)."""

        async def handle(event: str, sid: str, *args: Any) -> Ack:
            data = args[0] if len(args) == 1 else list(args)
            _, refused = await self._admit(sid, data)
            return refused or refusal("unknown_event", f"no such event: {event}")

        self._sio.on("*", handle)

    async def _dispatch(
        self, event: str, sid: str, data: Any, model: type[PayloadT], handler: Handler[PayloadT]
    ) -> Ack:
        user_id, refused = await self._admit(sid, data)
        if refused is not None:
            return refused
        try:
            payload = model.model_validate(data)
        except ValidationError as exc:
            return refusal("invalid_payload", _describe(exc))
        if user_id is None:
            raise Unauthorized("the socket is not authenticated")
        return await handler(ClientSocket(sid, user_id), payload)

    async def _admit(self, sid: str, data: Any) -> tuple[uuid.UUID | None, Ack | None]:
        """The socket's user, and a refusal if the event must be dropped."""
        async with self._sio.session(sid) as session:
            bucket = session.get(RATE_BUCKET_KEY)
            if not isinstance(bucket, TokenBucket):
                bucket = session[RATE_BUCKET_KEY] = TokenBucket(rate=self._rate, burst=self._burst)
            raw_user_id = session.get("user_id")
        user_id = uuid.UUID(raw_user_id) if isinstance(raw_user_id, str) else None
        # The bucket is checked first: an oversized or malformed flood must cost nothing more.
        if not bucket.take():
            return user_id, refusal("rate_limited", "too many events; slow down")
        size = _encoded_size(data)
        if size is None:
            return user_id, refusal("invalid_payload", "the payload must be JSON")
        if size > self._max_bytes:
            return user_id, refusal(
                "payload_too_large", f"payloads are limited to {self._max_bytes} bytes"
            )
        return user_id, None
