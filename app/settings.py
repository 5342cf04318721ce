"""Settings of the web process, read from the environment (prefix ``APP_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "change-me-in-production"


class Settings(BaseSettings):
    """Configuration shared by the web process, the dispatcher and the CLI."""

    model_config = SettingsConfigDict(env_prefix="APP_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # The conventional unprefixed DATABASE_URL wins so platforms that inject it just work.
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        validation_alias=AliasChoices("DATABASE_URL", "APP_DATABASE_URL"),
    )
    jwt_secret: str = PLACEHOLDER_SECRET
    jwt_audience: str = "family-app"
    jwt_issuer: str = "family-app-api"
    jwt_ttl_seconds: int = Field(default=3600, gt=0)
    # One NOTIFY per committing transaction wakes the dispatcher; without it, polling alone.
    outbox_notify: bool = True
    outbox_channel: str = "outbox_events"
    socketio_channel: str = "socketio"
    # python-socketio's AsyncRedisManager replaces the Postgres manager when set.
    socketio_redis_url: str | None = None
    cors_origins: list[str] = []
    # Most events a reconnecting socket is replayed; past it the client refetches its state.
    replay_cap: int = Field(default=500, ge=0, le=10_000)
    # Client-originated socket events (chat.join, chat.typing, app.visibility, ...) draw from a
    # token bucket per socket; a flood is answered with `rate_limited` acks and dropped.
    socket_events_per_second: float = Field(default=10.0, gt=0)
    socket_events_burst: int = Field(default=20, ge=1)
    socket_max_payload_bytes: int = Field(default=4096, gt=0)
    # Each web process refreshes its presence heartbeat this often; its sockets stop counting
    # as online once the heartbeat is older than the stale window (a crashed process).
    presence_heartbeat_seconds: float = Field(default=5.0, gt=0)
    presence_stale_seconds: float = Field(default=30.0, gt=0)

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


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
