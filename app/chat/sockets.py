"""The chat's client events: chat.join, chat.leave and chat.typing.

Registered on the socket server's gate by the composition root (``app.main``).
"""

from __future__ import annotations

import socketio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.chat import service as chat_service
from app.chat.schemas import ChatRef, TypingIn, TypingOut
from app.errors import Unauthorized
from app.families.models import User
from app.outbox.streams import chat_stream
from app.realtime.client_events import Ack, ClientEventGate, ClientSocket, ok, refusal


def register_chat_handlers(
    sio: socketio.AsyncServer,
    gate: ClientEventGate,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Register the chat's client events on ``gate``."""

    async def join(client: ClientSocket, ref: ChatRef) -> Ack:
        # The database decides, not the token: membership may have changed since it was issued.
        async with sessionmaker() as session, session.begin():
            user = await session.get(User, client.user_id)
            if user is None:
                raise Unauthorized("the socket's user no longer exists")
            await chat_service.get_member_chat(session=session, actor=user, chat_id=ref.chat_id)
        await sio.enter_room(client.sid, chat_stream(ref.chat_id))
        return ok()

    async def leave(client: ClientSocket, ref: ChatRef) -> Ack:
        await sio.leave_room(client.sid, chat_stream(ref.chat_id))
        return ok()

    async def typing(client: ClientSocket, signal: TypingIn) -> Ack:
        room = chat_stream(signal.chat_id)
        # Joining checked membership; a socket outside the room has no business typing in it.
        if room not in sio.rooms(client.sid):
            return refusal("not_joined", "join the chat before typing in it")
        data = TypingOut(chat_id=signal.chat_id, user_id=client.user_id, typing=signal.typing)
        # Ephemeral: straight to the room through the client manager, never the outbox.
        await sio.emit(
            "chat.typing",
            data.model_dump(mode="json", by_alias=True),
            room=room,
            skip_sid=client.sid,
        )
        return ok()

    gate.on("chat.join", ChatRef, join)
    gate.on("chat.leave", ChatRef, leave)
    gate.on("chat.typing", TypingIn, typing)
