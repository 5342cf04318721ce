"""REST endpoints for Web Push: the VAPID public key and the user's subscriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from app.auth.dependencies import CurrentUser
from app.db import DbSession
from app.errors import ErrorBody
from app.push import service as push_service
from app.push.schemas import (
    SubscriptionIn,
    SubscriptionOut,
    UnsubscribeIn,
    VapidPublicKeyOut,
)
from app.settings import Settings

router = APIRouter(prefix="/push", tags=["push"])


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get("/vapid-public-key", response_model=VapidPublicKeyOut)
async def vapid_public_key(request: Request) -> VapidPublicKeyOut:
    """The server's VAPID public key, for `pushManager.subscribe({applicationServerKey})`."""
    settings = _settings(request)
    if settings.vapid_public_key is None:
        raise push_service.PushNotConfigured("Web Push is not configured on this server")
    return VapidPublicKeyOut(public_key=settings.vapid_public_key)


@router.post(
    "/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
    responses={
        200: {
            "model": SubscriptionOut,
            "description": "The endpoint was already subscribed; its keys are updated",
        },
        409: {
            "model": ErrorBody,
            "description": "Another user holds the endpoint and these are not its keys",
        },
    },
)
async def subscribe(
    body: SubscriptionIn,
    request: Request,
    response: Response,
    actor: CurrentUser,
    session: DbSession,
    user_agent: Annotated[str | None, Header()] = None,
) -> SubscriptionOut:
    """Subscribe this browser to push (its `PushSubscription` JSON); subscribing again is a no-op.

    The endpoint must be an https URL of an allowed push service (422 otherwise). An endpoint
    another user holds moves to the caller only with the same keys, which only the browser
    holding the subscription knows (a shared device); otherwise 409 `endpoint_taken`.
    """
    subscription, created = await push_service.subscribe(
        session=session,
        actor=actor,
        data=body,
        user_agent=user_agent,
        settings=_settings(request),
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return SubscriptionOut.model_validate(subscription)


@router.get("/subscriptions", response_model=list[SubscriptionOut])
async def list_subscriptions(actor: CurrentUser, session: DbSession) -> list[SubscriptionOut]:
    """The current user's subscribed devices."""
    subscriptions = await push_service.list_subscriptions(session=session, actor=actor)
    return [SubscriptionOut.model_validate(s) for s in subscriptions]


@router.delete("/subscriptions", status_code=status.HTTP_204_NO_CONTENT)
async def unsubscribe(body: UnsubscribeIn, actor: CurrentUser, session: DbSession) -> None:
    """Unsubscribe one of the current user's browsers, named by its endpoint in the JSON body
    (`{"endpoint": …}`); queued pushes go."""
    await push_service.unsubscribe(session=session, actor=actor, endpoint=body.endpoint)
