"""REST endpoints for chats and their messages."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.auth.dependencies import CurrentUser
from app.chat import service as chat_service
from app.chat.schemas import ChatCreate, ChatOut, MessageCreate, MessageOut, MessagePage
from app.db import DbSession

router = APIRouter(tags=["chat"])


@router.post(
    "/families/{family_id}/chats", status_code=status.HTTP_201_CREATED, response_model=ChatOut
)
async def create_chat(
    family_id: uuid.UUID, body: ChatCreate, actor: CurrentUser, session: DbSession
) -> ChatOut:
    """Create a chat with members of the family; the creator is always a member."""
    chat = await chat_service.create_chat(
        session=session, actor=actor, family_id=family_id, data=body
    )
    return ChatOut.of(chat)


@router.get("/families/{family_id}/chats", response_model=list[ChatOut])
async def list_chats(family_id: uuid.UUID, actor: CurrentUser, session: DbSession) -> list[ChatOut]:
    """List the chats the caller is a member of."""
    chats = await chat_service.list_chats(session=session, actor=actor, family_id=family_id)
    return [ChatOut.of(c) for c in chats]


@router.get("/chats/{chat_id}/messages", response_model=MessagePage)
async def list_messages(
    chat_id: uuid.UUID,
    actor: CurrentUser,
    session: DbSession,
    before: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MessagePage:
    """A page of the chat's messages, newest first (members only)."""
    messages, next_cursor = await chat_service.list_messages(
        session=session, actor=actor, chat_id=chat_id, before=before, limit=limit
    )
    return MessagePage(items=[MessageOut.of(m) for m in messages], next_cursor=next_cursor)


@router.post(
    "/chats/{chat_id}/messages", status_code=status.HTTP_201_CREATED, response_model=MessageOut
)
async def post_message(
    chat_id: uuid.UUID, body: MessageCreate, actor: CurrentUser, session: DbSession
) -> MessageOut:
    """Post a message (members only); the chat's room receives `chat.message.created`."""
    message = await chat_service.post_message(
        session=session, actor=actor, chat_id=chat_id, body=body.body
    )
    return MessageOut.of(message)
