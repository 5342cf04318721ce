"""Drive the system under test: members made through the app's services or signed up over REST,
REST writes, and the recorder's Socket.IO process."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx
from harness import JWT_SECRET, Child

from app.auth.passwords import hash_password
from app.auth.sessions import start_session
from app.db import create_engine, create_sessionmaker
from app.families import service as family_service
from app.families.models import Role
from app.settings import Settings

PASSWORD = "correct horse battery"


@dataclass
class Member:
    id: str
    family_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_families(
    database_url: str, count: int, size: int, *, token_ttl_seconds: int = 3600
) -> list[list[Member]]:
    """``count`` families of ``size`` members (a parent, then children), each made in one
    transaction through the app's services, with access tokens that last ``token_ttl_seconds``.
    One Argon2 hash serves every member: signing up hundreds over REST, a hash each, would take
    minutes of set-up on 2 cores."""
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        environment="test", jwt_secret=JWT_SECRET, jwt_ttl_seconds=token_ttl_seconds
    )
    password_hash = await hash_password(PASSWORD)
    engine = create_engine(database_url, pool_size=1)
    families = []
    try:
        for number in range(count):
            async with create_sessionmaker(engine)() as session, session.begin():
                family = await family_service.create_family(session=session, name="Bench")
                members = []
                for index in range(size):
                    user = await family_service.add_member(
                        session=session,
                        family_id=family.id,
                        email=f"member-{number}-{index}-{tag}@example.com",
                        display_name=f"Member {index}",
                        password_hash=password_hash,
                        role=Role.CHILD if index else Role.PARENT,
                    )
                    tokens = await start_session(session, user, settings)
                    members.append(Member(str(user.id), str(family.id), tokens.access_token))
            families.append(members)
    finally:
        await engine.dispose()
    return families


async def sign_up_parent(api: httpx.AsyncClient, family_name: str) -> tuple[Member, str]:
    """The parent of a new family, signed up over REST, and the tag that keeps the emails of the
    family's members unique."""
    tag = uuid.uuid4().hex[:10]
    signup = await api.post(
        "/v1/auth/signup",
        json={"familyName": family_name, "displayName": "Parent", "password": PASSWORD}
        | {"email": f"parent-{tag}@example.com"},
    )
    signup.raise_for_status()
    user = signup.json()["user"]
    return Member(user["id"], user["familyId"], signup.json()["accessToken"]), tag


async def sign_up_family(api: httpx.AsyncClient, children: int) -> tuple[Member, list[Member]]:
    """A new family: its parent, and ``children`` children whose sockets the benchmark watches."""
    parent, tag = await sign_up_parent(api, "Bench")
    kids = []
    for index in range(children):
        email = f"child-{index}-{tag}@example.com"
        added = await api.post(
            f"/v1/families/{parent.family_id}/members",
            headers=parent.headers,
            json={"displayName": "Kid", "email": email, "password": PASSWORD, "role": "child"},
        )
        added.raise_for_status()
        login = await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        login.raise_for_status()
        kids.append(Member(added.json()["id"], parent.family_id, login.json()["accessToken"]))
    return parent, kids


async def write_tasks(
    api: httpx.AsyncClient,
    parent: Member,
    assignees: list[Member],
    *,
    count: int,
    rate: float | None,
    writers: int,
    after_each: Callable[[str], Awaitable[None]] | None = None,
) -> tuple[dict[str, float], float]:
    """POST ``count`` tasks from ``writers`` concurrent writers, the i-th not before i/rate s,
    assigned to the assignees in turn; each writer awaits ``after_each(task_id)`` (if given)
    after each 201 before its next POST.

    Returns time.time() at each task's 201 response by task id, and the elapsed seconds.
    """
    path = f"/v1/families/{parent.family_id}/tasks"
    responded: dict[str, float] = {}
    indexes = itertools.count()
    started = time.perf_counter()

    async def writer() -> None:
        while (index := next(indexes)) < count:
            if rate:
                await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            assignee = assignees[index % len(assignees)]
            body = {"title": f"Bench task {index}", "assignedTo": [assignee.id]}
            response = await api.post(path, headers=parent.headers, json=body)
            arrived = time.time()
            if response.status_code != 201:
                raise RuntimeError(f"POST task: {response.status_code} {response.text[:300]}")
            task_id = response.json()["id"]
            responded[task_id] = arrived
            if after_each is not None:
                await after_each(task_id)

    await asyncio.gather(*(writer() for _ in range(writers)))
    return responded, time.perf_counter() - started


def task_of(envelope: Any) -> str | None:
    """The task id of a task event's envelope; None for anything else."""
    data = envelope.get("data") if isinstance(envelope, dict) else None
    task_id = data.get("taskId") if isinstance(data, dict) else None
    return task_id if isinstance(task_id, str) else None


class Recorder:
    """The members' Socket.IO client process (``bench/peers.py record``), driven over its pipes.

    Keeps every task event's receipt, in arrival order: (time.time(), socket index, envelope).
    """

    def __init__(self, child: Child) -> None:
        self.child = child
        self.receipts: list[tuple[float, int, dict[str, Any]]] = []
        self.first_by_task: dict[str, tuple[float, dict[str, Any]]] = {}

    def _readline(self) -> str:
        assert self.child.process.stdout is not None
        line = self.child.process.stdout.readline()
        if not line:
            raise RuntimeError(f"recorder exited:\n{self.child.log_tail()}")
        return line

    def wait_ready(self) -> None:
        if self._readline().strip() != "ready":
            raise RuntimeError(f"recorder did not connect:\n{self.child.log_tail()}")

    def wait_for_tasks(self, task_ids: Collection[str], timeout: float) -> None:
        """Take in receipts until each task's event has arrived, or ``timeout`` s pass."""
        assert self.child.process.stdin is not None
        deadline = time.monotonic() + timeout
        while missing := [t for t in task_ids if t not in self.first_by_task]:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # The recorder answers once it holds len(missing) new events, or at the deadline.
            self.child.process.stdin.write(f"{len(missing)} {left}\n")
            self.child.process.stdin.flush()
            for received_at, socket_index, envelope in json.loads(self._readline()):
                task_id = task_of(envelope)
                if task_id is None:
                    continue  # not a task event (e.g. the end-of-replay marker)
                self.receipts.append((received_at, socket_index, envelope))
                self.first_by_task.setdefault(task_id, (received_at, envelope))

    def drain(self, seconds: float) -> None:
        """Take in every task event that arrives within ``seconds`` (late duplicates, say)."""
        assert self.child.process.stdin is not None
        self.child.process.stdin.write(f"{2**62} {seconds}\n")
        self.child.process.stdin.flush()
        for received_at, socket_index, envelope in json.loads(self._readline()):
            task_id = task_of(envelope)
            if task_id is not None:
                self.receipts.append((received_at, socket_index, envelope))
                self.first_by_task.setdefault(task_id, (received_at, envelope))

    def delivery_faults(self) -> dict[str, int]:
        """Events a socket received more than once, and receipts whose seq is not above all
        those before it on the same socket (each socket is one user's stream)."""
        seen: set[tuple[int, str]] = set()
        last_seq: dict[int, int] = {}
        duplicates = out_of_order = 0
        for _, socket_index, envelope in self.receipts:
            duplicates += (socket_index, envelope["id"]) in seen
            seen.add((socket_index, envelope["id"]))
            out_of_order += envelope["seq"] <= last_seq.get(socket_index, 0)
            last_seq[socket_index] = max(last_seq.get(socket_index, 0), envelope["seq"])
        return {"duplicates": duplicates, "out_of_order": out_of_order}
