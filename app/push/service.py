"""Web Push use cases: subscribe a device, unsubscribe it, list a user's devices.

Sending is the dispatcher's job (``dispatcher.push_sender``); nothing here talks to a push service.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import Boolean, and_, delete, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, NotFound
from app.families.models import User
from app.push.endpoints import check_endpoint
from app.push.models import PushSubscription
from app.push.schemas import SubscriptionIn
from app.settings import Settings

MAX_USER_AGENT_CHARS = 512


class PushNotConfigured(NotFound):
    code = "push_not_configured"


class TooManySubscriptions(Conflict):
    code = "too_many_subscriptions"


class EndpointTaken(Conflict):
    code = "endpoint_taken"


def _expiry(expiration_time: float | None) -> datetime | None:
    if expiration_time is None:
        return None
    return datetime.fromtimestamp(expiration_time / 1000, UTC)


async def subscribe(
    *,
    session: AsyncSession,
    actor: User,
    data: SubscriptionIn,
    user_agent: str | None,
    settings: Settings,
) -> tuple[PushSubscription, bool]:
    """Store (or refresh) the actor's subscription; return it and whether it is new.

    The endpoint identifies the browser, so subscribing it again updates the row (the user's
    new keys, if the browser rotated them). A browser that changed hands (another user logged
    in on a shared device) moves to its new user only when it presents the keys it is stored
    with: the endpoint URL may leak (it is a URL), but the auth secret never leaves the browser.
    Otherwise ``EndpointTaken`` (409), and nothing changes.
    """
    if not settings.web_push_enabled:
        raise PushNotConfigured("Web Push is not configured on this server")
    check_endpoint(data.endpoint, settings.push_endpoint_allowlist)
    # The user's row lock serialises their subscribes, so the cap holds under concurrency.
    await session.execute(select(User.id).where(User.id == actor.id).with_for_update())
    others = await session.scalar(
        select(func.count())
        .select_from(PushSubscription)
        .where(PushSubscription.user_id == actor.id, PushSubscription.endpoint != data.endpoint)
    )
    if (others or 0) >= settings.push_max_subscriptions_per_user:
        raise TooManySubscriptions(
            "too many devices subscribed; unsubscribe one first",
            details={"limit": settings.push_max_subscriptions_per_user},
        )
    values = {
        "user_id": actor.id,
        "p256dh": data.keys.p256dh,
        "auth": data.keys.auth,
        "user_agent": user_agent[:MAX_USER_AGENT_CHARS] if user_agent else None,
        "expires_at": _expiry(data.expiration_time),
    }
    new = insert(PushSubscription).values(id=uuid.uuid4(), endpoint=data.endpoint, **values)
    # The condition is evaluated on the conflicting row, locked, so it holds under concurrency.
    upsert = new.on_conflict_do_update(
        index_elements=[PushSubscription.endpoint],
        set_={**values, "updated_at": func.clock_timestamp()},
        where=or_(
            PushSubscription.user_id == actor.id,
            and_(
                PushSubscription.p256dh == new.excluded.p256dh,
                PushSubscription.auth == new.excluded.auth,
            ),
        ),
    )
    # xmax is 0 on a freshly inserted row version, set on an updated one.
    returning = upsert.returning(PushSubscription, literal_column("xmax = 0", Boolean))
    result = await session.execute(returning, execution_options={"populate_existing": True})
    row = result.one_or_none()
    if row is None:  # the endpoint is another user's, and these are not its keys
        raise EndpointTaken(
            "another user holds this push endpoint; only the browser holding it can move it"
        )
    subscription, created = row
    return subscription, bool(created)


async def unsubscribe(*, session: AsyncSession, actor: User, endpoint: str) -> None:
    """Remove the actor's subscription of ``endpoint`` (its queued pushes go with it)."""
    removed = await session.scalar(
        delete(PushSubscription)
        .where(PushSubscription.endpoint == endpoint, PushSubscription.user_id == actor.id)
        .returning(PushSubscription.id)
    )
    if removed is None:
        raise NotFound("no such push subscription")


async def list_subscriptions(*, session: AsyncSession, actor: User) -> list[PushSubscription]:
    """The actor's subscribed devices, newest first."""
    result = await session.scalars(
        select(PushSubscription)
        .where(PushSubscription.user_id == actor.id)
        .order_by(PushSubscription.created_at.desc(), PushSubscription.id)
    )
    return list(result)
