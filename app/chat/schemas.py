"""Wire shapes of chats and messages, over REST and on the socket."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field, field_validator

from app.chat.models import Chat, ChatMessage
from app.schemas import CamelModel

MAX_MESSAGE_CHARS = 2000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class ChatCreate(CamelModel):
    name: str = Field(min_length=1, max_length=100)
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)

    _name_not_blank = field_validator("name")(_not_blank)


class ChatOut(CamelModel):
    """A chat as its members see it."""

    id: uuid.UUID
    family_id: uuid.UUID
    name: str
    created_by: uuid.UUID | None
    member_ids: list[uuid.UUID]
    created_at: datetime

    @classmethod
    def of(cls, chat: Chat) -> ChatOut:
        return cls(
            id=chat.id,
            family_id=chat.family_id,
            name=chat.name,
            created_by=chat.created_by,
            member_ids=chat.member_ids,
            created_at=chat.created_at,
        )


class MessageCreate(CamelModel):
    body: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)

    _body_not_blank = field_validator("body")(_not_blank)


class MessageOut(CamelModel):
    """A chat message, in REST answers and inside `chat.message.created`."""

    id: uuid.UUID
    chat_id: uuid.UUID
    sender_id: uuid.UUID | None
    body: str
    created_at: datetime

    @classmethod
    def of(cls, message: ChatMessage) -> MessageOut:
        return cls(
            id=message.id,
            chat_id=message.chat_id,
            sender_id=message.sender_id,
            body=message.body,
            created_at=message.created_at,
        )


class MessagePage(CamelModel):
    """Messages newest first; pass `nextCursor` as `before` for the older ones (null: no more)."""

    items: list[MessageOut]
    next_cursor: str | None


class ChatRef(CamelModel):
    """The payload of `chat.join` and `chat.leave`."""

    chat_id: uuid.UUID


class TypingIn(CamelModel):
    """The payload of `chat.typing` from a client."""

    chat_id: uuid.UUID
    typing: bool


class TypingOut(CamelModel):
    """`chat.typing` as the chat's other joined members receive it (ephemeral, no envelope)."""

    chat_id: uuid.UUID
    user_id: uuid.UUID
    typing: bool
