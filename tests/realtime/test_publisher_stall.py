"""A web process whose publishing connection hangs still lets sockets connect."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import psycopg

from doubles.socket_clients import SocketRecorder
from tests.harness import add_member, signup, web_process
from tests.throwaway import ThrowawayPostgres


def publisher_backend(database_url: str) -> int:
    """The server process of the web process's Socket.IO publishing connection."""
    deadline = time.monotonic() + 10
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'socketio-publisher'"
            ).fetchone()
            if row is not None:
                return int(row[0])
            assert time.monotonic() < deadline, "no publishing connection"
            time.sleep(0.05)


async def test_a_hung_publisher_does_not_wedge_socket_connects(
    tmp_path: Path, log_dir: Path
) -> None:
    with ThrowawayPostgres(tmp_path) as pg:
        pg.create_database("family")
        pg.migrate("family")
        database_url = pg.database_url("family")
        web, base_url = await asyncio.to_thread(web_process, database_url, log_dir)
        stopped: int | None = None
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as api:
                parent = await signup(api, "Ada")
                child = await add_member(api, parent, "Kim", "child")
                other = await add_member(api, parent, "Lou", "child")
            watcher = SocketRecorder(base_url, parent.token)
            await watcher.connect()  # its presence announcement opens the publisher
            stopped = await asyncio.to_thread(publisher_backend, database_url)
            # A half-open connection, as far as the web process can tell: nothing comes back.
            os.kill(stopped, signal.SIGSTOP)

            started = time.monotonic()
            late = SocketRecorder(base_url, child.token)
            await late.connect()
            await late.wait_until(lambda _: len(late.syncs) == 1, 10)
            assert time.monotonic() - started < 8
            os.kill(stopped, signal.SIGCONT)
            stopped = None

            # The wedged connection was dropped; the next announcement goes out on a new one.
            third = SocketRecorder(base_url, other.token)
            await third.connect()
            online = ("presence.changed", {"userId": other.id, "online": True})
            await watcher.wait_until(lambda _: online in watcher.received, 10)
            assert "publishing timed out" in web.log()
            for recorder in (watcher, late, third):
                await recorder.disconnect()
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
            web.stop()
