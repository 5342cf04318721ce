"""Real processes and real clients for the tests: uvicorn, the dispatcher, Socket.IO clients.

The process handling is the benchmarks' (bench/harness.py; tests may import bench, never the
reverse): a test's ``ManagedProcess`` is a ``bench.harness.Child``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg

from app.devserver import procfile_web_options
from bench.harness import Child as ManagedProcess
from bench.harness import free_port, start_child
from doubles.socket_clients import DEADLINE_SECONDS, SocketRecorder

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_JWT_SECRET = "test-secret-" + "x" * 40


def terminate_listeners(database_url: str, channel: str) -> int:
    """Kill the backends LISTENing on ``channel`` in this database; return how many."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = %s",
            (f'LISTEN "{channel}"',),
        ).fetchone()
    assert row is not None
    return int(row[0])


def process_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a child process of the system under test."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "APP_ENVIRONMENT": "test",
        "APP_JWT_SECRET": TEST_JWT_SECRET,
        "DISPATCHER_METRICS_PORT": "0",
        "DISPATCHER_POLL_INTERVAL_SECONDS": "0.2",
        "DISPATCHER_LEASE_SECONDS": "3",
        "DISPATCHER_RETRY_BASE_SECONDS": "0.1",
        "DISPATCHER_RETRY_MAX_SECONDS": "0.5",
        "DISPATCHER_LOG_LEVEL": "DEBUG",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


def web_process(
    database_url: str,
    log_dir: Path,
    *,
    log_level: str = "warning",
    port: int | None = None,
    **env: str,
) -> tuple[ManagedProcess, str]:
    """A started uvicorn serving the app (on ``port``, or a free one); returns it with its base
    URL once it answers."""
    port = port or free_port()
    # The Procfile's options: the tests run the web process as deployed.
    argv = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    argv += procfile_web_options()
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    proc = start_child(
        f"web:{port}", argv, process_env(database_url, **env), log_dir, log_name=f"web-{port}.log"
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_http(f"{base_url}/healthz", timeout=DEADLINE_SECONDS)
    except TimeoutError:
        proc.stop()
        raise
    return proc, base_url


def dispatcher_process(database_url: str, log_dir: Path, **env: str) -> ManagedProcess:
    """A started ``python -m dispatcher`` whose drain loop is running."""
    proc = start_dispatcher_process(database_url, log_dir, **env)
    proc.wait_for_log("dispatcher worker started", timeout=DEADLINE_SECONDS)
    return proc


def start_dispatcher_process(database_url: str, log_dir: Path, **env: str) -> ManagedProcess:
    """``python -m dispatcher``, started (not waited for)."""
    return start_child(
        "dispatcher",
        [sys.executable, "-m", "dispatcher"],
        process_env(database_url, **env),
        log_dir,
        log_name=f"dispatcher-{uuid.uuid4().hex[:8]}.log",
    )


def outbox_cli(
    database_url: str, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """``outbox ARGS`` (dispatcher.cli) against ``database_url``, run to completion."""
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        env=process_env(database_url, **env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outbox_cli_json(database_url: str, *args: str) -> Any:
    """``outbox ARGS --json``, which must succeed; its parsed output."""
    result = outbox_cli(database_url, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def run_sql(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``query`` in a transaction of its own (committed); its rows, if it returns any."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall() if cursor.description else []


def leased_rows(database_url: str, owner_pid: int | None) -> int:
    """Pending rows under a live lease (of the dispatcher with this pid: owners name it)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
            " AND lease_expires_at > now() AND claimed_by LIKE %s",
            ("%" if owner_pid is None else f"%:{owner_pid}:%",),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def stop_while_holding_leases(
    database_url: str, proc: ManagedProcess, *, only_dispatcher: bool = False
) -> int:
    """SIGSTOP ``proc`` at a moment it holds leased rows; return how many."""
    assert proc.process is not None
    pid = proc.process.pid
    for _ in range(500):
        os.kill(pid, signal.SIGSTOP)
        if held := await asyncio.to_thread(
            leased_rows, database_url, None if only_dispatcher else pid
        ):
            return held
        os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(0.01)
    raise AssertionError("the dispatcher never held a lease when stopped")


async def connected(base_url: str, member: Member) -> SocketRecorder:
    """A Socket.IO client for ``member``, connected."""
    recorder = SocketRecorder(base_url, member.token)
    await recorder.connect()
    return recorder


@dataclass
class Member:
    id: str
    family_id: str
    email: str
    token: str
    role: str
    refresh_token: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def with_tokens(self, token: str, refresh_token: str) -> Member:
        """The same member in another session (another device, or after a refresh)."""
        return replace(self, token=token, refresh_token=refresh_token)


async def signup(api: httpx.AsyncClient, name: str = "Parent") -> Member:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    response = await api.post(
        "/v1/auth/signup",
        json={
            "familyName": f"{name}'s family",
            "displayName": name,
            "email": email,
            "password": "correct horse battery",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Member(
        body["user"]["id"],
        body["user"]["familyId"],
        email,
        body["accessToken"],
        "parent",
        body["refreshToken"],
    )


async def add_member(api: httpx.AsyncClient, parent: Member, name: str, role: str) -> Member:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    response = await api.post(
        f"/v1/families/{parent.family_id}/members",
        headers=parent.headers,
        json={
            "displayName": name,
            "email": email,
            "password": "correct horse battery",
            "role": role,
        },
    )
    assert response.status_code == 201, response.text
    member = Member(response.json()["id"], parent.family_id, email, "", role)
    return await log_in(api, member)


async def log_in(api: httpx.AsyncClient, member: Member) -> Member:
    """``member`` in a new session of their own, as on another device."""
    login = await api.post(
        "/v1/auth/login", json={"email": member.email, "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    return member.with_tokens(login.json()["accessToken"], login.json()["refreshToken"])


async def child_of_new_family(api: httpx.AsyncClient) -> Member:
    """A child (Kim) of a new family whose parent is Ada, logged in."""
    parent = await signup(api, "Ada")
    return await add_member(api, parent, "Kim", "child")


async def seed_household(
    api: httpx.AsyncClient, web: str
) -> tuple[tuple[Member, Member, Member, Member, Member], dict[str, SocketRecorder]]:
    """The seed examples' cast, each with a connected socket: parents Ada and Ben, children Kim
    and Lou, and Zed, a parent of another family (who must hear nothing of this one)."""
    ada = await signup(api, "Ada")
    ben = await add_member(api, ada, "Ben", "parent")
    kim = await add_member(api, ada, "Kim", "child")
    lou = await add_member(api, ada, "Lou", "child")
    zed = await signup(api, "Zed")
    cast = (ada, ben, kim, lou, zed)
    return cast, {m.id: await connected(web, m) for m in cast}


async def grant(
    api: httpx.AsyncClient, parent: Member, member: Member, amount: int, reason: str = "Helping out"
) -> dict[str, Any]:
    """``parent`` grants ``member`` karma over REST; the ledger entry."""
    response = await api.post(
        "/v1/karma/grant",
        headers=parent.headers,
        json={"userId": member.id, "amount": amount, "reason": reason},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_reward(
    api: httpx.AsyncClient, parent: Member, name: str, cost: int
) -> dict[str, Any]:
    response = await api.post(
        f"/v1/families/{parent.family_id}/rewards",
        headers=parent.headers,
        json={"name": name, "description": "A treat", "karmaCost": cost},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def create_task(
    api: httpx.AsyncClient, parent: Member, assignees: list[Member], **fields: object
) -> dict[str, Any]:
    """A task ``parent`` creates over REST for ``assignees`` (title Dishes unless given)."""
    response = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": "Dishes", "assignedTo": [m.id for m in assignees], **fields},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
