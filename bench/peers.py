"""The benchmark's other processes: a bare Socket.IO server and two Socket.IO clients.

    uvicorn peers:bare_app --app-dir bench      # baseline B's server: echoes every "echo"
    python bench/peers.py ping URL COUNT        # baseline B's client: prints round trips (s)
    python bench/peers.py record URL TOKEN,...  # the system's clients: record every event

``record`` prints ``ready`` once all its sockets are connected, then answers each stdin line
``EXPECTED TIMEOUT`` by waiting until it holds EXPECTED new events (or TIMEOUT seconds pass) and
printing them as one JSON line of ``[time.time() at receipt, socket index, envelope]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

PAD = "x" * 512  # about the size of a task envelope, so B moves a comparable payload

bare_server = socketio.AsyncServer(async_mode="asgi")
bare_app = socketio.ASGIApp(bare_server)


async def _echo(sid: str, data: Any) -> None:
    await bare_server.emit("echo", data, to=sid)


bare_server.on("echo", _echo)


async def ping(url: str, count: int) -> list[float]:
    """Round trips of ``count`` sequential echo requests, after a short warm-up."""
    client = socketio.AsyncClient(reconnection=False)
    arrivals: asyncio.Queue[float] = asyncio.Queue()

    async def on_echo(data: Any) -> None:
        arrivals.put_nowait(time.perf_counter())

    client.on("echo", on_echo)
    await client.connect(url, transports=["websocket"], wait_timeout=10)
    round_trips = []
    for index in range(count + 100):
        sent = time.perf_counter()
        await client.emit("echo", {"seq": index, "pad": PAD})
        received = await asyncio.wait_for(arrivals.get(), 5)
        if index >= 100:
            round_trips.append(received - sent)
    await client.disconnect()
    return round_trips


async def record(url: str, tokens: list[str]) -> None:
    """Record every event these members receive, one socket each, until stdin closes."""
    received: list[tuple[float, int, Any]] = []
    arrived = asyncio.Event()
    clients = [socketio.AsyncClient(reconnection=False) for _ in tokens]

    def recorder_for(index: int) -> Callable[[str, Any], Awaitable[None]]:
        async def on_any(event: str, data: Any) -> None:
            received.append((time.time(), index, data))
            arrived.set()

        return on_any

    for index, (client, token) in enumerate(zip(clients, tokens, strict=True)):
        client.on("*", recorder_for(index))
        await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        expected, timeout = int(line.split()[0]), float(line.split()[1])
        deadline = loop.time() + timeout
        while len(received) < expected and loop.time() < deadline:
            arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await arrived.wait()
        print(json.dumps(received), flush=True)
        received.clear()
    for client in clients:
        await client.disconnect()


if __name__ == "__main__":
    mode, url, arg = sys.argv[1:4]
    if mode == "ping":
        print(json.dumps(asyncio.run(ping(url, int(arg)))))
    else:
        asyncio.run(record(url, arg.split(",")))
