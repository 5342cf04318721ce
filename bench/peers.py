"""The benchmark's other processes: a bare Socket.IO server and two Socket.IO clients.

    uvicorn peers:bare_app --app-dir bench      # baseline B's server: echoes every "echo"
    python bench/peers.py ping URL COUNT        # baseline B's client: prints round trips (s)
    python bench/peers.py record URL TOKEN,... [hidden]  # the system's clients: record every event
    python bench/peers.py push-service PUBLIC_KEY DIR COUNT  # the loopback Web Push service

``record`` prints ``ready`` once all its sockets are connected, then answers each stdin line
``EXPECTED TIMEOUT`` by waiting until it holds EXPECTED new events (or TIMEOUT seconds pass) and
printing them as one JSON line of ``[time.time() at receipt, socket index, envelope]``. With
``hidden``, each socket first reports its app as not visible, so every event also queues a push to
its member's devices (as for an app in the background).

``push-service`` runs the push service the push tests use (doubles/push_service.py: it checks
VAPID and decrypts every message, on HTTPS) in a process of its own, as a real one would be. It
prints one JSON line ``{"caFile", "subscriptions": [COUNT browser subscriptions]}``, then serves
until stdin closes, and prints ``{"received", "refused"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
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


async def record(url: str, tokens: list[str], *, hidden: bool) -> None:
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
        if hidden:
            ack = await client.call("app.visibility", {"visible": False}, timeout=10)
            if not ack.get("ok"):
                raise RuntimeError(f"app.visibility refused: {ack}")
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


async def push_service(public_key: str, directory: Path, count: int) -> None:
    """The loopback push service, serving until stdin closes."""
    from doubles.push_service import PushService

    service = PushService(public_key, directory)
    await service.start()
    try:
        subscriptions = [service.new_browser().subscription() for _ in range(count)]
        print(json.dumps({"caFile": str(service.ca_file), "subscriptions": subscriptions}))
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        print(json.dumps({"received": len(service.received), "refused": len(service.refused)}))
        sys.stdout.flush()
    finally:
        await service.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "ping":
        print(json.dumps(asyncio.run(ping(args[0], int(args[1])))))
    elif mode == "push-service":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for doubles/
        asyncio.run(push_service(args[0], Path(args[1]), int(args[2])))
    else:
        asyncio.run(record(args[0], args[1].split(","), hidden=args[2:] == ["hidden"]))
