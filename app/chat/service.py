"""Chat use cases. Each works in the caller's transaction and never commits."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.chat import events as chat_events
from app.chat.models import Chat, ChatMessage, chat_members
from app.chat.schemas import ChatCreate
from app.errors import AppError, Forbidden, NotFound
from app.families import service as family_service
from app.families.models import User


class InvalidCursor(AppError):
    status_code = 422
    code = "invalid_cursor"


@dataclass(frozen=True, slots=True)
class MessageCursor:
    """A keyset position in a chat's messages: strictly older than this one."""

    created_at: datetime
    message_id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.message_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> MessageCursor:
        """Parse a cursor from a client; anything malformed is InvalidCursor."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
            created_at, _, message_id = raw.partition("|")
            position = cls(datetime.fromisoformat(created_at), uuid.UUID(message_id))
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidCursor("the cursor is not one this API handed out") from exc
        if position.created_at.tzinfo is None:
            raise InvalidCursor("the cursor is not one this API handed out")
        return position


async def create_chat(
    *, session: AsyncSession, actor: User, family_id: uuid.UUID, data: ChatCreate
) -> Chat:
    """A chat of ``actor``'s family; the creator is always one of its members."""
    family_service.require_same_family(actor, family_id)
    member_ids = list(dict.fromkeys([actor.id, *data.member_ids]))
    members = await family_service.family_members_by_id(
        session=session, family_id=family_id, user_ids=member_ids
    )
    chat = Chat(family_id=family_id, name=data.name, created_by=actor.id, members=members)
    session.add(chat)
    await session.flush()
    await session.refresh(chat, ["created_at"])
    return chat


async def list_chats(*, session: AsyncSession, actor: User, family_id: uuid.UUID) -> list[Chat]:
    """The chats of ``family_id`` that ``actor`` is a member of."""
    family_service.require_same_family(actor, family_id)
    result = await session.scalars(
        select(Chat)
        .join(chat_members, chat_members.c.chat_id == Chat.id)
        .where(Chat.family_id == family_id, chat_members.c.user_id == actor.id)
        .order_by(Chat.created_at, Chat.id)
    )
    return list(result)


async def get_member_chat(*, session: AsyncSession, actor: User, chat_id: uuid.UUID) -> Chat:
    """The chat, if ``actor`` is a member: another family's chat is NotFound, else Forbidden."""
    chat = await session.get(Chat, chat_id)
    if chat is None or chat.family_id != actor.family_id:
        raise NotFound("chat not found")
    is_member = await session.scalar(
        select(
            exists().where(chat_members.c.chat_id == chat_id, chat_members.c.user_id == actor.id)
        )
    )
    if not is_member:
        raise Forbidden("only the chat's members may do this")
    return chat


async def list_messages(
    *,
    session: AsyncSession,
    actor: User,
    chat_id: uuid.UUID,
    before: str | None,
    limit: int,
) -> tuple[list[ChatMessage], str | None]:
    """One page of messages, newest first, and the cursor of the next (older) page, if any."""
    await get_member_chat(session=session, actor=actor, chat_id=chat_id)
    query = select(ChatMessage).where(ChatMessage.chat_id == chat_id)
    if before is not None:
        position = MessageCursor.decode(before)
        query = query.where(
            tuple_(ChatMessage.created_at, ChatMessage.id)
            < tuple_(position.created_at, position.message_id)
        )
    # One extra row tells whether an older page exists without a count query.
    rows = list(
        await session.scalars(
            query.order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        oldest = page[-1]
        next_cursor = MessageCursor(oldest.created_at, oldest.id).encode()
    return page, next_cursor


async def post_message(
    *, session: AsyncSession, actor: User, chat_id: uuid.UUID, body: str
) -> ChatMessage:
    """Store a message and stage `chat.message.created` for the chat's room."""
    chat = await get_member_chat(session=session, actor=actor, chat_id=chat_id)
    message = ChatMessage(chat_id=chat.id, sender_id=actor.id, body=body)
    session.add(message)
    await session.flush()
    await session.refresh(message, ["created_at"])
    chat_events.record_message_created(session=session, chat=chat, message=message)
    return message
