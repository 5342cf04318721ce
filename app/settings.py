"""Settings of the web process, read from the environment (prefix ``APP_``)."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app import vapid_keys

PLACEHOLDER_SECRET = "change-me-in-production"
# A VAPID subject is how a push service reaches the sender's operator (RFC 8292 §2.1).
PLACEHOLDER_VAPID_SUBJECT = "mailto:webpush@example.com"
# As strict as py_vapid, which refuses to sign anything else (an https subject has no path).
VAPID_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[\w%-]+(\.[\w%-]+)+|https://[\w-]+(\.[\w-]+)+)$")
# The push services of Chrome/Android (FCM), Firefox, Edge/Windows (WNS) and Safari (APNs).
REAL_PUSH_SERVICES = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.notify.windows.com",
    "web.push.apple.com",
)
PUSH_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


class DatabaseSettings(BaseSettings):
    """Where the database is: all that migrations (the release phase) need."""

    # Errors must not echo the input: it holds the JWT secret and the VAPID private key.
    model_config = SettingsConfigDict(
        env_prefix="APP_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    # The conventional unprefixed DATABASE_URL wins so platforms that inject it just work.
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("DATABASE_URL", "APP_DATABASE_URL"),
    )


class Settings(DatabaseSettings):
    """Configuration shared by the web process, the dispatcher and the CLI."""

    # Fail closed: a deployment that sets nothing is production, and refuses the placeholder
    # secret and the committed VAPID keys; `python3 dev.py` asks for development explicitly.
    environment: Literal["development", "test", "production"] = "production"
    jwt_secret: str = PLACEHOLDER_SECRET
    jwt_audience: str = "family-app"
    jwt_issuer: str = "family-app-api"
    # Access tokens are short-lived; clients renew them with the session's refresh token, whose
    # lifetime starts again at each use (a device used within it stays logged in).
    jwt_ttl_seconds: int = Field(default=900, gt=0)
    refresh_ttl_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    # One NOTIFY per committing transaction wakes the dispatcher; without it, polling alone.
    outbox_notify: bool = True
    outbox_channel: str = "outbox_events"
    socketio_channel: str = "socketio"
    # python-socketio's AsyncRedisManager replaces the Postgres manager when set.
    socketio_redis_url: str | None = None
    # Origins of other sites allowed to open sockets; empty: only the web client's own origin.
    cors_origins: list[str] = []
    # The largest REST request body read (413 past it); the API's own are a few KiB.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Login attempts per window (app/auth/throttle.py): from one client address, and for one
    # account from one address. Behind a proxy, run uvicorn with --proxy-headers so the
    # address is the client's.
    login_window_seconds: float = Field(default=300.0, gt=0)
    login_attempts_per_address: int = Field(default=100, ge=1)
    login_attempts_per_account: int = Field(default=10, ge=1)
    # Most events a reconnecting socket's catch-up sends; past it the client refetches its state.
    catch_up_cap: int = Field(default=500, ge=0, le=10_000)
    # Client-originated socket events (chat.join, chat.typing, app.visibility, ...) draw from a
    # token bucket per socket; a flood is answered with `rate_limited` acks and dropped.
    socket_events_per_second: float = Field(default=10.0, gt=0)
    socket_events_burst: int = Field(default=20, ge=1)
    socket_max_payload_bytes: int = Field(default=4096, gt=0)
    # Each web process refreshes its presence heartbeat this often; its sockets stop counting
    # as online once the heartbeat is older than the stale window (a crashed process).
    presence_heartbeat_seconds: float = Field(default=5.0, gt=0)
    presence_stale_seconds: float = Field(default=30.0, gt=0)
    # Web Push (README, Web Push). The VAPID key pair, base64url (generate one with `outbox
    # vapid-keys`): web processes need the public key (given, or derived from the private one),
    # the dispatcher the private key. Outside development, no key means Web Push is off; in
    # development a committed pair is used, which is refused anywhere else.
    vapid_private_key: SecretStr | None = None
    vapid_public_key: str | None = None
    vapid_subject: str = PLACEHOLDER_VAPID_SUBJECT
    # Hosts a subscription's endpoint may point at (`*.` matches any subdomain); only https.
    # Tests add their loopback push service.
    push_endpoint_allowlist: list[str] = Field(default_factory=lambda: list(REAL_PUSH_SERVICES))
    # Devices per user: each subscription multiplies the pushes every event makes.
    push_max_subscriptions_per_user: int = Field(default=20, ge=1, le=1000)

    @model_validator(mode="after")
    def refuse_placeholder_secret(self) -> Self:
        if self.environment != "development" and self.jwt_secret == PLACEHOLDER_SECRET:
            raise ValueError("APP_JWT_SECRET must be set to a real secret outside development")
        if self.environment != "development" and len(self.jwt_secret) < 32:
            raise ValueError("APP_JWT_SECRET must be at least 32 characters outside development")
        return self

    @model_validator(mode="after")
    def presence_outlives_heartbeat(self) -> Self:
        # Otherwise a live process's sockets would flap offline between two heartbeats.
        if self.presence_stale_seconds < 2 * self.presence_heartbeat_seconds:
            raise ValueError("APP_PRESENCE_STALE_SECONDS must be at least twice the heartbeat")
        return self

    @field_validator("push_endpoint_allowlist")
    @classmethod
    def push_hosts_are_hosts(cls, hosts: list[str]) -> list[str]:
        normalised = [host.strip().lower() for host in hosts]
        if bad := [host for host in normalised if not PUSH_HOST_PATTERN.match(host)]:
            raise ValueError(f"not host names (or *.suffix patterns): {', '.join(bad)}")
        return normalised

    @model_validator(mode="after")
    def check_web_push(self) -> Self:
        development = self.environment == "development"
        if development and self.vapid_private_key is None and self.vapid_public_key is None:
            self.vapid_private_key = SecretStr(vapid_keys.DEVELOPMENT_PRIVATE_KEY)
        if self.vapid_private_key is not None:
            private = self.vapid_private_key.get_secret_value()
            try:
                derived = vapid_keys.public_key_of(private)
            except ValueError as exc:
                raise ValueError(f"APP_VAPID_PRIVATE_KEY: {exc}") from exc
            if self.vapid_public_key is None:
                self.vapid_public_key = derived
            elif not _same_key(self.vapid_public_key, derived):
                raise ValueError("APP_VAPID_PUBLIC_KEY does not belong to APP_VAPID_PRIVATE_KEY")
        if self.vapid_public_key is None:
            return self
        try:
            vapid_keys.load_public_key(self.vapid_public_key)
        except ValueError as exc:
            raise ValueError(f"APP_VAPID_PUBLIC_KEY: {exc}") from exc
        if not development and _same_key(self.vapid_public_key, vapid_keys.DEVELOPMENT_PUBLIC_KEY):
            raise ValueError("the development VAPID key pair must not be used outside development")
        if not VAPID_SUBJECT.match(self.vapid_subject):
            raise ValueError("APP_VAPID_SUBJECT must be a mailto: address or an https: URL")
        if not development and self.vapid_subject == PLACEHOLDER_VAPID_SUBJECT:
            raise ValueError("APP_VAPID_SUBJECT must be set to a real contact outside development")
        return self

    @property
    def web_push_enabled(self) -> bool:
        """Whether browsers may subscribe (a VAPID public key is configured)."""
        return self.vapid_public_key is not None


def _same_key(a: str, b: str) -> bool:
    return vapid_keys.b64url_decode(a) == vapid_keys.b64url_decode(b)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
