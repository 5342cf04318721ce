"""Chat events: typed payloads staged in the outbox for the chat's room."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.chat.models import Chat, ChatMessage
from app.chat.schemas import MessageOut
from app.outbox.staging import EventPayload, stage
from app.outbox.streams import chat_stream
from app.push.notifications import Notification, push_notification


class ChatMessageCreated(EventPayload):
    """A message was posted in a chat."""

    event_type = "chat.message.created"
    audience = "the chat's room `chat:<chatId>`: the sockets of its members that joined it"
    chat_id: uuid.UUID
    message: MessageOut


# Pushed to the chat's members (app.push), the sender aside; one topic per chat, so a newer
# message replaces an older one still waiting at the push service.
@push_notification(ChatMessageCreated, ttl=timedelta(days=1), urgency="high")
def _message_notification(event: ChatMessageCreated) -> Notification:
    return Notification(
        title="New message",
        body=event.message.body,
        about=f"chat:{event.chat_id}",
        url=f"/#chat/{event.chat_id}",
        skip_users=frozenset({event.message.sender_id}),
    )


def record_message_created(*, session: AsyncSession, chat: Chat, message: ChatMessage) -> None:
    payload = ChatMessageCreated(chat_id=chat.id, message=MessageOut.of(message))
    stage(session, payload, streams=[chat_stream(chat.id)], family_id=chat.family_id)
