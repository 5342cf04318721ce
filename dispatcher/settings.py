"""Settings of the dispatcher process (prefix ``DISPATCHER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Self
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class DispatcherSettings(BaseSettings):
    """How the dispatcher claims, retries and retains outbox rows."""

    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", env_file=".env", extra="ignore")

    # Rows per claim when the outbox is shallow. While claims come back full (a backlog), each
    # takes twice the last, up to max_batch_size (or batch_size, if larger); a claim that comes
    # back short halves the size again, down to batch_size.
    batch_size: int = Field(default=200, ge=1, le=5000)
    max_batch_size: int = Field(default=1000, ge=1, le=5000)
    # A lost NOTIFY costs at most one poll interval.
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    # How long a claim stays fenced; a crashed dispatcher's rows are reclaimed after it.
    lease_seconds: float = Field(default=30.0, gt=0)
    # How long after a crash its leases are reclaimed (a liveness check runs this often).
    liveness_interval_seconds: float = Field(default=1.0, gt=0)
    # An event that keeps failing holds back the later events of its streams (their order) for
    # this long after its first failure; then they go ahead and it is delivered late, or dies.
    stream_hold_seconds: float = Field(default=30.0, ge=0)
    # A row held back behind another dispatcher's delivery of its stream is claimable again
    # after this; meanwhile claims move on to other streams.
    held_back_retry_seconds: float = Field(default=0.05, gt=0)
    # Nothing waits on another process without a bound: a lock wait, a statement, and above
    # all a transaction left open by a stalled dispatcher (its locks are freed when it is cut).
    lock_timeout_seconds: float = Field(default=2.0, gt=0)
    statement_timeout_seconds: float = Field(default=30.0, gt=0)
    idle_in_transaction_timeout_seconds: float = Field(default=5.0, gt=0)
    # Another dispatcher's delivery transaction open this long is cut off by the liveness job
    # (a stall mid-pipeline escapes the idle timeout).
    stalled_transaction_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    retention_days: float = Field(default=7.0, gt=0)
    purge_batch_size: int = Field(default=5000, ge=1)
    purge_interval_seconds: float = Field(default=3600.0, gt=0)
    gauge_interval_seconds: float = Field(default=5.0, gt=0)
    # Recurring tasks. The generation job runs at start and then every interval: it is
    # idempotent and a run with nothing due costs one query, so a short interval only makes
    # a new day's tasks (and a new template's first one) appear sooner.
    task_generation_interval_seconds: float = Field(default=600.0, gt=0)
    # The zone whose calendar decides what "today" is and when a generated task is due.
    task_generation_time_zone: ZoneInfo = ZoneInfo("UTC")
    # How many days (today included) a run creates missed tasks for after downtime.
    task_generation_catch_up_days: int = Field(default=14, ge=1, le=366)
    listener_keepalive_seconds: float = Field(default=10.0, gt=0)
    metrics_host: str = "127.0.0.1"
    # 0 disables the Prometheus endpoint (tests run several dispatchers at once).
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    log_level: str = "INFO"
    # JSON lines keep the structured fields (event_id, type, attempt, latency_ms) of each record.
    log_format: str = Field(default="json", pattern="^(text|json)$")
    # The push sender (its own queue, loop, connection pool and HTTP session): at most this many
    # requests in flight, each cut off after the timeout. Sending waits on the push service, so
    # this over its latency bounds the rate: 256 at 100 ms allows 2,560/s (bench/push_throughput.py
    # measured 1,533/s on 2 cores, against 279/s with 32).
    push_concurrency: int = Field(default=256, ge=1, le=1000)
    push_timeout_seconds: float = Field(default=10.0, gt=0)
    push_max_attempts: int = Field(default=8, ge=1)
    push_retry_base_seconds: float = Field(default=5.0, gt=0)
    # Also the most a push service's Retry-After is waited.
    push_retry_max_seconds: float = Field(default=3600.0, gt=0)
    # A claimed push is sent again after this if its sender died; it must outlast a request
    # and its one shrunken retry (413).
    push_lease_seconds: float = Field(default=60.0, gt=0)
    push_channel: str = "push_deliveries"
    # PEM certificates trusted for push services on top of the system's: only for a test push
    # service on loopback with a self-signed certificate.
    push_ca_file: Path | None = None

    @model_validator(mode="after")
    def push_lease_outlives_requests(self) -> Self:
        if self.push_lease_seconds <= 2 * self.push_timeout_seconds:
            raise ValueError(
                "DISPATCHER_PUSH_LEASE_SECONDS must exceed twice DISPATCHER_PUSH_TIMEOUT_SECONDS"
            )
        return self

    def session_options(self) -> str:
        """Server settings of the dispatcher's sessions (the drain's and the push sender's)."""
        # The dispatcher's own writes (claims, delivered and sent marks) need not wait for the
        # WAL flush: if the server crashed and lost them, the rows would just be claimed and
        # delivered or sent again (at least once; clients dedupe). The events themselves were
        # made durable by the writers' synchronous commits. The timeouts bound every wait on
        # another process (docs/delivery.md). JIT off: every statement here touches a handful
        # of rows, and one whose estimate crosses jit_above_cost would be compiled at every
        # execution (~40 ms the emits wait for).
        timeouts = {
            "lock_timeout": self.lock_timeout_seconds,
            "statement_timeout": self.statement_timeout_seconds,
            "idle_in_transaction_session_timeout": self.idle_in_transaction_timeout_seconds,
        }
        return " ".join(
            ["-c synchronous_commit=off", "-c jit=off"]
            + [f"-c {name}={round(seconds * 1000)}ms" for name, seconds in timeouts.items()]
        )
