"""PostgresManager: the bundle wire format, and real emits through Postgres to a real socket."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import socketio
import uvicorn
from psycopg.conninfo import make_conninfo

from app.realtime.pg_manager import (
    CHUNK_BODY_CHARS,
    MAX_PAYLOAD_BYTES,
    BundleAssembler,
    PostgresManager,
    encode_bundle,
)

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOM = "family:test"
DEADLINE_SECONDS = 10.0


# --- wire format -------------------------------------------------------------------------------


def _messages(text: str) -> list[dict[str, Any]]:
    return [{"method": "emit", "event": "note", "data": [text], "n": n} for n in (1, 2)]


def _feed(assembler: BundleAssembler, chunks: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        out.extend(assembler.add(chunk))
    return out


def test_round_trip_in_any_chunk_order() -> None:
    messages = _messages('grüße 😀 "quoted" \\ ' * 2000)
    chunks = encode_bundle(messages)
    assert len(chunks) > 1
    random.Random(7).shuffle(chunks)
    assembler = BundleAssembler()
    assert [assembler.add(c) for c in chunks[:-1]] == [[]] * (len(chunks) - 1)
    assert assembler.add(chunks[-1]) == messages


@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_chunk_boundaries(delta: int) -> None:
    messages = _messages("x" * 500)
    body_length = len(json.dumps(messages, separators=(",", ":")))
    for chunk_chars in (body_length + delta, (body_length + delta) // 3):
        chunks = encode_bundle(messages, chunk_chars=chunk_chars)
        assert len(chunks) == math.ceil(body_length / chunk_chars)
        assert {c.split(":", 3)[2] for c in chunks} == {str(len(chunks))}
        assert _feed(BundleAssembler(), chunks) == messages


def test_interleaved_bundles() -> None:
    first, second = _messages("a" * 20_000), _messages("b" * 30_000)
    chunks_1, chunks_2 = encode_bundle(first), encode_bundle(second)
    interleaved = [c for pair in zip(chunks_2, chunks_1, strict=False) for c in pair]
    interleaved += chunks_2[len(chunks_1) :]
    assert _feed(BundleAssembler(), interleaved) == first + second


def test_every_chunk_fits_in_a_notification() -> None:
    # Non-ASCII and characters JSON escapes make the body longer than the text.
    chunks = encode_bundle(_messages('€\n"\\😀' * 60_000))
    assert len(chunks) > 100
    assert all(len(chunk.encode()) < MAX_PAYLOAD_BYTES for chunk in chunks)
    assert all(len(chunk.split(":", 3)[3]) <= CHUNK_BODY_CHARS for chunk in chunks)


def test_incomplete_bundles_are_dropped_by_age_and_count() -> None:
    now = [0.0]
    assembler = BundleAssembler(max_age_seconds=60, clock=lambda: now[0])
    old, young = encode_bundle(_messages("o" * 20_000)), encode_bundle(_messages("y" * 20_000))
    assembler.add(old[0])
    now[0] = 61.0
    assembler.add(young[0])  # evicts `old`, so its remaining chunks can never complete it
    assert _feed(assembler, old[1:]) == []
    assert _feed(assembler, young[1:]) == _messages("y" * 20_000)

    assembler = BundleAssembler(max_pending=2)
    bundles = [encode_bundle(_messages(str(i) * 20_000)) for i in range(3)]
    for chunks in bundles:
        assembler.add(chunks[0])  # the third start pushes the first out
    assert _feed(assembler, bundles[1][1:]) == _messages("1" * 20_000)
    assert _feed(assembler, bundles[2][1:]) == _messages("2" * 20_000)
    assert _feed(assembler, bundles[0][1:]) == []
    assert assembler.add("not a chunk") == []


# --- real server, real client, real Postgres ----------------------------------------------------


@dataclass
class RunningServer:
    url: str
    application_name: str


@pytest.fixture
def channel() -> str:
    return f"sio_test_{uuid.uuid4().hex}"


@pytest.fixture
def server(channel: str) -> Iterator[RunningServer]:
    # The application name lets tests find the server's LISTEN backend in pg_stat_activity.
    application_name = f"pg-manager-{channel[-12:]}"
    manager = PostgresManager(
        make_conninfo(DATABASE_URL, application_name=application_name), channel=channel
    )
    manager.reconnect_delay_seconds = 0.05
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        await sio.enter_room(sid, ROOM)

    sio.on("connect", connect)
    uvicorn_server = uvicorn.Server(
        uvicorn.Config(socketio.ASGIApp(sio), log_level="warning", ws="wsproto")
    )
    # Bound and listening before the thread starts, so clients can connect right away.
    sock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]})
    thread.start()
    yield RunningServer(f"http://127.0.0.1:{sock.getsockname()[1]}", application_name)
    uvicorn_server.should_exit = True
    thread.join(DEADLINE_SECONDS)
    sock.close()
    assert not thread.is_alive()


async def listening_pid(application_name: str, *, other_than: int | None = None) -> int:
    """Poll until the server's listener has LISTENed (on a backend other than `other_than`)."""
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        async with asyncio.timeout(DEADLINE_SECONDS):
            while True:
                cursor = await conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                    " AND state = 'idle' AND (query LIKE 'LISTEN%%' OR query = 'SELECT 1')"
                    " AND pid IS DISTINCT FROM %s",
                    (application_name, other_than),
                )
                row = await cursor.fetchone()
                if row is not None:
                    return int(row[0])
                await asyncio.sleep(0.02)


@pytest.fixture
async def received(server: RunningServer) -> AsyncIterator[asyncio.Queue[Any]]:
    """Events `note` received by a websocket client in ROOM, once the server is listening."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client = socketio.AsyncClient()

    async def on_note(data: Any) -> None:
        queue.put_nowait(data)

    client.on("note", on_note)
    await client.connect(server.url, transports=["websocket"], wait_timeout=DEADLINE_SECONDS)
    await listening_pid(server.application_name)
    yield queue
    await client.disconnect()


@pytest.fixture
async def emitter(channel: str) -> AsyncIterator[PostgresManager]:
    manager = PostgresManager(DATABASE_URL, channel=channel, write_only=True)
    yield manager
    await manager.aclose()


async def next_note(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), DEADLINE_SECONDS)


async def test_small_emit_reaches_the_room(
    received: asyncio.Queue[Any], emitter: PostgresManager
) -> None:
    await emitter.emit("note", {"hello": "world"}, room=ROOM)
    await emitter.emit("note", "not for this room", room="family:other")
    await emitter.emit("note", "second", room=ROOM)
    assert await next_note(received) == {"hello": "world"}
    assert await next_note(received) == "second"


async def test_large_payload_arrives_intact(
    received: asyncio.Queue[Any], emitter: PostgresManager
) -> None:
    # Quotes, backslashes, braces and commas: what an array literal would have to escape.
    text = 'Grüße aus Köln — 😀 "zitiert" \\ {a,b} NULL '
    payload = {"text": text, "items": [f'€{i}ü"{{}}' for i in range(6000)]}
    assert len(json.dumps(payload)) > 50_000
    await emitter.emit("note", payload, room=ROOM)
    assert await next_note(received) == payload


async def test_publishing_in_follows_the_transaction(
    received: asyncio.Queue[Any], emitter: PostgresManager
) -> None:
    async with await psycopg.AsyncConnection.connect(DATABASE_URL) as conn:

        async def failing_block() -> None:
            async with emitter.publishing_in(conn):
                await emitter.emit("note", "failed block", room=ROOM)
                raise LookupError

        with pytest.raises(LookupError):
            await failing_block()
        await conn.commit()  # the failed block sent nothing, so committing sends nothing

        async with emitter.publishing_in(conn):
            await emitter.emit("note", "rolled back", room=ROOM)
        await conn.rollback()

        async with emitter.publishing_in(conn):
            await emitter.emit("note", "marker", room=ROOM)
        await conn.commit()
        assert await next_note(received) == "marker"

        async with emitter.publishing_in(conn):
            for i in range(5):
                await emitter.emit("note", {"i": i, "pad": "ö" * 3000}, room=ROOM)
        await conn.commit()
        assert [(await next_note(received))["i"] for _ in range(5)] == list(range(5))
    assert received.empty()


async def test_listener_survives_backend_termination(
    server: RunningServer,
    received: asyncio.Queue[Any],
    emitter: PostgresManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="app.pg_notify")
    pid = await listening_pid(server.application_name)
    async with await psycopg.AsyncConnection.connect(DATABASE_URL, autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await listening_pid(server.application_name, other_than=pid)
    await emitter.emit("note", "after reconnect", room=ROOM)
    assert await next_note(received) == "after reconnect"
    assert any("LISTEN connection lost" in r.getMessage() for r in caplog.records)
