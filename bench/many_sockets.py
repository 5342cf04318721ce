"""Thousands of authenticated sockets, cheaply: users seeded with COPY, their access tokens, and
client processes that each hold a share of the sockets with a raw WebSocket client.

    python bench/many_sockets.py WS_URL TOKENS_FILE SOURCE_IP CONCURRENCY COMPRESSION

python-socketio's ``AsyncClient`` costs too much to run 10,000 of in a few processes, so the
client of the ``websockets`` package speaks the Engine.IO 4 / Socket.IO 5 handshake itself: it
sends the CONNECT packet with ``auth: {token}`` (plus ``lastSeq`` when the tokens file gives one
after the token on its line), needs the server's CONNECT answer (a refusal counts as a
failure), answers the server's pings, and notes the arrival (``time.monotonic()``: Linux's
CLOCK_MONOTONIC, the same clock in every process) of every outbox envelope and ``sync``; other
events (``presence.changed``, ...) are ignored.

A client process prints ``{"ready": N}`` once loaded, opens its sockets (``CONCURRENCY``
handshakes in flight) when a line arrives on stdin, prints ``{"connected", "deflate",
"seconds"}`` once each has opened or failed, then answers each stdin line with one JSON line:

- ``report``: ``{"open", "failed", "failures"}``, the sockets still open and the failures;
- ``messages COUNT TIMEOUT``: waits until every socket still open holds COUNT noted messages
  (or TIMEOUT s pass), then prints them and forgets them: ``{"open", "failed", "failures",
  "sockets": [{"started", "opened", "messages": [[at, event, seq, id, sync data], ...]}]}``,
  one entry per token, in the tokens file's order.

The benchmark side: ``seed_users``, ``issue_tokens``, and ``open_sockets``, which starts the
processes and returns them as ``Clients``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from harness import JWT_SECRET, Child, start_child

FAMILY_SIZE = 4

# --- the client process ------------------------------------------------------------------------


class Socket:
    """One Engine.IO/Socket.IO connection: it answers pings and notes envelopes and syncs."""

    def __init__(self, token: str, last_seq: int | None) -> None:
        self.token = token
        self.last_seq = last_seq
        self.open = False
        self.deflate = False  # whether the server accepted permessage-deflate
        self.settled = asyncio.Event()  # set once it is open, or has failed to open
        self.task: asyncio.Task[None] | None = None
        self.started: float | None = None  # time.monotonic() as the connection began
        self.opened: float | None = None  # ... and as the server's CONNECT answer arrived
        # (time.monotonic(), event, seq, id, data of a sync) of each envelope and sync
        self.messages: list[tuple[float, str, int | None, Any, dict[str, Any] | None]] = []

    @property
    def ended(self) -> bool:
        """Failed to open, or closed since."""
        return self.settled.is_set() and not self.open

    def note(self, packet: str, at: float) -> None:
        """Note an EVENT packet's payload (``["event", data]``) if it is an envelope or sync."""
        try:
            event, data = json.loads(packet)[:2]
        except ValueError:
            return
        if event == "sync" and isinstance(data, dict):
            self.messages.append((at, event, None, None, data))
        elif isinstance(data, dict) and "seq" in data:
            self.messages.append((at, event, data["seq"], data.get("id"), None))


async def hold_socket(url: str, source_ip: str, compression: str | None, socket: Socket) -> None:
    """Connect, authenticate, then answer pings and note events until the connection ends."""
    from websockets.asyncio.client import connect

    socket.started = time.monotonic()
    async with connect(
        url,
        compression=compression,
        ping_interval=None,  # Engine.IO has its own heartbeat
        open_timeout=60,
        max_size=None,
        proxy=None,
        local_addr=(source_ip, 0),
    ) as ws:
        opening = await ws.recv()
        if not isinstance(opening, str) or not opening.startswith("0"):
            raise RuntimeError(f"no Engine.IO open packet: {opening!r}")
        auth: dict[str, Any] = {"token": socket.token}
        if socket.last_seq is not None:
            auth["lastSeq"] = socket.last_seq
        await ws.send("40" + json.dumps(auth))
        while True:
            message = await ws.recv()
            if message == "2":
                await ws.send("3")
            elif isinstance(message, str) and message.startswith("40"):
                break
            elif isinstance(message, str) and message.startswith("44"):
                raise ConnectionRefusedError(message[2:])
        socket.opened = time.monotonic()
        socket.open = True
        socket.deflate = bool(ws.protocol.extensions)
        socket.settled.set()
        try:
            async for message in ws:
                if message == "2":
                    await ws.send("3")
                elif isinstance(message, str) and message.startswith("42"):
                    socket.note(message[2:], time.monotonic())
        finally:
            socket.open = False


async def wait_for_messages(sockets: list[Socket], count: int, patience: float) -> None:
    """Until every socket still open holds ``count`` noted messages, or ``patience`` s pass."""
    deadline = time.monotonic() + patience
    # Polled, not woken by each arrival: the sockets note their own arrival times, and a check
    # of thousands of sockets per arrival would take CPU from the server being measured.
    while time.monotonic() < deadline and not all(  # noqa: ASYNC110
        s.ended or len(s.messages) >= count for s in sockets
    ):
        await asyncio.sleep(0.05)


async def client_main(
    url: str, lines: list[str], source_ip: str, concurrency: int, compression: str | None
) -> None:
    """Open every socket when told to, then answer the commands of the module docstring."""
    sockets = []
    for line in lines:
        token, _, last_seq = line.partition(" ")
        sockets.append(Socket(token, int(last_seq) if last_seq else None))
    failures: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def run(socket: Socket) -> None:
        try:
            await hold_socket(url, source_ip, compression, socket)
        except Exception as exc:  # a refusal, a reset, a timeout: counted
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            socket.settled.set()

    async def open_one(socket: Socket) -> None:
        async with gate:
            socket.task = asyncio.create_task(run(socket))
            await socket.settled.wait()

    print(json.dumps({"ready": len(sockets)}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the go
    started = time.perf_counter()
    await asyncio.gather(*(open_one(s) for s in sockets))
    took = time.perf_counter() - started
    connected = sum(s.open for s in sockets)
    deflate = sum(s.deflate for s in sockets)
    print(json.dumps({"connected": connected, "deflate": deflate, "seconds": took}), flush=True)
    while command := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        answer: dict[str, Any] = {
            "failed": len(failures),
            "failures": failures[:5],
        }
        if command[0] == "messages":
            await wait_for_messages(sockets, int(command[1]), float(command[2]))
            answer["sockets"] = [
                {"started": s.started, "opened": s.opened, "messages": s.messages} for s in sockets
            ]
            for socket in sockets:
                socket.messages = []
        answer["open"] = sum(s.open for s in sockets)
        print(json.dumps(answer), flush=True)
    for socket in sockets:
        if socket.task is not None:
            socket.task.cancel()


# --- the benchmark side ------------------------------------------------------------------------


def seed_users(database_url: str, count: int) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """``count`` users in families of four: (user id, family id, role)."""
    families = [uuid.uuid4() for _ in range((count + FAMILY_SIZE - 1) // FAMILY_SIZE)]
    users = [
        (uuid.uuid4(), families[i // FAMILY_SIZE], "parent" if i % FAMILY_SIZE == 0 else "child")
        for i in range(count)
    ]
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy("COPY families (id, name) FROM STDIN") as copy:
            for family_id in families:
                copy.write_row((family_id, "Bench"))
        with cur.copy(
            "COPY users (id, family_id, email, display_name, role, password_hash) FROM STDIN"
        ) as copy:
            for user_id, family_id, role in users:
                copy.write_row((user_id, family_id, f"{user_id}@bench.test", "Bench", role, "x"))
    return users


def issue_tokens(database_url: str, users: list[tuple[uuid.UUID, uuid.UUID, str]]) -> list[str]:
    """Access tokens as the login endpoint issues them, each in a session of its own."""
    from app.auth.tokens import issue_token
    from app.families.models import Role, User
    from app.settings import Settings

    settings = Settings(environment="test", jwt_secret=JWT_SECRET)
    sessions = [uuid.uuid4() for _ in users]
    with (
        psycopg.connect(database_url) as conn,
        conn.cursor() as cur,
        cur.copy("COPY auth_sessions (id, user_id, expires_at) FROM STDIN") as copy,
    ):
        for session_id, (user_id, _, _) in zip(sessions, users, strict=True):
            copy.write_row((session_id, user_id, "infinity"))
    return [
        issue_token(User(id=user_id, family_id=family_id, role=Role(role)), session_id, settings)
        for session_id, (user_id, family_id, role) in zip(sessions, users, strict=True)
    ]


class Clients:
    """The client processes of one phase, each holding a share of the tokens' sockets."""

    def __init__(self, children: list[Child], shares: list[int]) -> None:
        self.children = children
        self.shares = shares  # sockets per process, in order

    def read_all(self) -> list[dict[str, Any]]:
        answers = []
        for child in self.children:
            assert child.process.stdout is not None
            line = child.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{child.name} failed:\n{child.log_tail()}")
            answers.append(json.loads(line))
        return answers

    def tell(self, line: str) -> None:
        for child in self.children:
            assert child.process.stdin is not None
            child.process.stdin.write(line + "\n")
            child.process.stdin.flush()

    def go(self) -> float:
        """Tell every process to open its sockets; returns time.monotonic() as they were told."""
        told = time.monotonic()
        self.tell("go")
        return told

    def ask(self, command: str = "report") -> list[dict[str, Any]]:
        self.tell(command)
        return self.read_all()

    def messages(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Every socket's noted messages (see the module docstring), in the tokens' order,
        once each open socket holds ``count`` (or after ``timeout`` s); also ``"failed"``."""
        answers = self.ask(f"messages {count} {timeout}")
        return [s for answer in answers for s in answer["sockets"]]

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def open_sockets(
    name: str,
    url: str,
    tokens: Sequence[str],
    *,
    processes: int,
    concurrency: int,
    compression: str,
    source_net: int,
    scratch: Path,
    log_dir: Path,
    last_seqs: Sequence[int] | None = None,
    go: bool = True,
) -> Clients:
    """Start ``processes`` client processes for one socket per token (each from its own
    loopback source address, so no phase runs out of ephemeral ports), with ``auth.lastSeq``
    from ``last_seqs`` if given. Returns once each has loaded, and, with ``go``, told to open
    its share (then read their ``connected`` lines with ``read_all``)."""
    ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    lines = list(tokens)
    if last_seqs is not None:
        lines = [f"{token} {seq}" for token, seq in zip(tokens, last_seqs, strict=True)]
    share = (len(lines) + processes - 1) // processes
    children, shares = [], []
    for index in range(processes):
        mine = lines[index * share : (index + 1) * share]
        if not mine:
            continue
        token_file = scratch / f"{name}-{index}.tokens"
        token_file.write_text("\n".join(mine))
        source_ip = f"127.{source_net}.{index // 250}.{index % 250 + 2}"
        argv = [sys.executable, __file__, ws_url, str(token_file), source_ip]
        argv += [str(concurrency), compression]
        children.append(start_child(f"{name}-client{index}", argv, os.environ, log_dir, pipes=True))
        shares.append(len(mine))
    clients = Clients(children, shares)
    try:
        clients.read_all()  # {"ready": N}
        if go:
            clients.go()
    except BaseException:
        clients.stop()
        raise
    return clients


if __name__ == "__main__":
    ws_url, token_file, source_ip, concurrency, compression = sys.argv[1:6]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            client_main(
                ws_url,
                Path(token_file).read_text().split("\n"),
                source_ip,
                int(concurrency),
                None if compression == "none" else compression,
            )
        )
    sys.exit(0)
