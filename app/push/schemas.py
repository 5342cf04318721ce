"""Wire shapes of Web Push: the browser's subscription and the server's VAPID key."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, field_validator

from app import vapid_keys
from app.schemas import CamelModel

AUTH_SECRET_BYTES = 16
MAX_ENDPOINT_CHARS = 2048


class SubscriptionKeys(CamelModel):
    """The browser's key material: its P-256 public key and its 16-byte auth secret."""

    p256dh: str = Field(max_length=200)
    auth: str = Field(max_length=100)

    @field_validator("p256dh")
    @classmethod
    def p256dh_is_a_point(cls, value: str) -> str:
        try:
            vapid_keys.load_public_key(value)
        except ValueError as exc:
            raise ValueError(f"p256dh must be a base64url P-256 public key: {exc}") from exc
        return value

    @field_validator("auth")
    @classmethod
    def auth_is_16_bytes(cls, value: str) -> str:
        try:
            secret = vapid_keys.b64url_decode(value)
        except ValueError as exc:
            raise ValueError("auth must be base64url") from exc
        if len(secret) != AUTH_SECRET_BYTES:
            raise ValueError(f"auth must be {AUTH_SECRET_BYTES} bytes, not {len(secret)}")
        return value


# The last millisecond of year 9999: a later expiry could not be stored as a timestamp.
MAX_EXPIRATION_MS = 253_402_300_799_999


class SubscriptionIn(CamelModel):
    """A browser's `PushSubscription`, as its `toJSON()` gives it."""

    # Browsers may add fields to PushSubscription's JSON; they are of no use here.
    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT_CHARS)
    # Milliseconds since the epoch, when the browser will drop the subscription (or null).
    expiration_time: float | None = Field(default=None, ge=0, le=MAX_EXPIRATION_MS)
    keys: SubscriptionKeys


class UnsubscribeIn(CamelModel):
    """Which of the user's browsers to unsubscribe: its endpoint (in the body, never the URL,
    which access logs and proxies keep: the endpoint is the capability to push to the browser)."""

    endpoint: str = Field(min_length=1, max_length=MAX_ENDPOINT_CHARS)


class SubscriptionOut(CamelModel):
    """One of the user's devices subscribed to push."""

    id: uuid.UUID
    endpoint: str
    user_agent: str | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class VapidPublicKeyOut(CamelModel):
    """The key to pass to `pushManager.subscribe` as `applicationServerKey` (base64url)."""

    public_key: str
