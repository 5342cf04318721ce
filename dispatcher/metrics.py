"""Prometheus metrics of the dispatcher."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BACKLOG = Gauge("outbox_backlog", "Pending outbox rows.")
OLDEST_PENDING_AGE = Gauge(
    "outbox_oldest_pending_age_seconds", "Age of the oldest pending outbox row."
)
DEAD = Gauge("outbox_dead", "Outbox rows that exhausted their attempts.")
DELIVERED = Counter("outbox_delivered", "Events handed to Socket.IO.", ["type"])
FAILED = Counter("outbox_failed", "Failed delivery attempts.", ["type"])
DIED = Counter("outbox_died", "Events that became dead.", ["type"])
COMMIT_TO_EMIT = Histogram(
    "outbox_commit_to_emit_seconds",
    "From the writing transaction to the emit commit.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "outbox_batch_size", "Rows per claimed batch.", buckets=(1, 5, 10, 25, 50, 100, 200, 500)
)
LISTENER_UP = Gauge("outbox_listener_up", "1 while the LISTEN connection is up.")
