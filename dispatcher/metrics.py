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
    "outbox_batch_size",
    "Rows per claimed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000, 2000, 5000),
)
LISTENER_UP = Gauge("outbox_listener_up", "1 while the LISTEN connection is up.")

# Web Push (dispatcher.push_queue, dispatcher.push_sender, dispatcher.jobs).
PUSH_BACKLOG = Gauge("push_backlog", "Pending push deliveries.")
PUSH_DEAD = Gauge("push_dead", "Push deliveries that exhausted their attempts.")
PUSH_OLDEST_PENDING_AGE = Gauge(
    "push_oldest_pending_age_seconds", "Age of the oldest pending push delivery."
)
PUSH_ENQUEUED = Counter("push_enqueued", "Push deliveries queued for finished events.", ["type"])
PUSH_SENT = Counter("push_sent", "Pushes a push service accepted.", ["type"])
PUSH_FAILED = Counter(
    "push_failed", "Failed push attempts, by HTTP status (or `error`).", ["type", "status"]
)
PUSH_DIED = Counter("push_died", "Push deliveries that became dead.", ["type"])
PUSH_SUBSCRIPTIONS_GONE = Counter(
    "push_subscriptions_gone", "Subscriptions removed after a 404/410 from their push service."
)
PUSH_REQUEST_SECONDS = Histogram(
    "push_request_seconds",
    "Push service request latency, encryption included.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PUSH_QUEUE_TO_SENT = Histogram(
    "push_queue_to_sent_seconds",
    "From the push being queued (its event delivered to Socket.IO) to a push service accepting it.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
