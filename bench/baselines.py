"""The bare baselines the benchmarks measure the system against, each timed in the same run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from harness import REPO_ROOT, free_port, start_child, uvicorn_argv


async def notify_round_trips(database_url: str, samples: int) -> list[float]:
    """Baseline A: seconds from sending a NOTIFY on one connection to receiving it on another."""
    connect = psycopg.AsyncConnection.connect
    async with (
        await connect(database_url, autocommit=True) as listener,
        await connect(database_url, autocommit=True) as sender,
    ):
        await listener.execute("LISTEN bench_round_trip")
        arrivals: asyncio.Queue[float] = asyncio.Queue()

        async def receive() -> None:
            async for notification in listener.notifies():
                arrivals.put_nowait(time.perf_counter() - float(notification.payload))

        receiver = asyncio.create_task(receive())
        round_trips = []
        try:
            for index in range(samples + 100):
                sent = repr(time.perf_counter())
                await sender.execute("SELECT pg_notify('bench_round_trip', %s)", (sent,))
                async with asyncio.timeout(5):  # wait_for could swallow a Ctrl-C here
                    latency = await arrivals.get()
                if index >= 100:  # warm-up
                    round_trips.append(latency)
        finally:
            # Before the connections close: the receiver holds the listener's lock, which
            # closing (on Ctrl-C too) waits for.
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
    return round_trips


def socketio_round_trips(samples: int, log_dir: Path) -> list[float]:
    """Baseline B: echo round trips between a bare Socket.IO server and a client process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = uvicorn_argv("peers:bare_app", port, "--app-dir", "bench")
    server = start_child("bare-socketio", argv, os.environ, log_dir)
    try:
        server.wait_for_http(f"{url}/socket.io/?EIO=4&transport=polling")
        pinger = [sys.executable, "bench/peers.py", "ping", url, str(samples)]
        out = subprocess.run(pinger, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"ping client failed:\n{out.stderr[-3000:]}")
        round_trips: list[float] = json.loads(out.stdout)
        return round_trips
    finally:
        server.stop()
