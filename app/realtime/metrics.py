"""Prometheus metrics of a web process's realtime side, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SOCKETS = Gauge("realtime_sockets", "Socket.IO clients connected to this process.")
ROOMS = Gauge("realtime_rooms", "Rooms with at least one socket on this process.")
CHANNEL_UP = Gauge(
    "realtime_manager_channel_up",
    "1 while this process listens to the other processes' emits (LISTEN or SUBSCRIBE).",
)
CATCH_UPS = Counter(
    "realtime_catch_ups",
    "Catch-ups from the outbox served to sockets (on connect and on sync.request).",
    ["recovered"],
)
RESYNCS = Counter(
    "realtime_resyncs", "resync notices sent to stream rooms of this process.", ["reason"]
)
