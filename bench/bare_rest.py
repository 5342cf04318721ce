"""The bare REST baseline: ``POST /v1/families/{id}/tasks`` as a Starlette + psycopg handler.

    DATABASE_URL=... APP_JWT_SECRET=... uvicorn bare_rest:app --app-dir bench

What bench/rest_throughput.py judges the real endpoint against: no FastAPI, no pydantic, no
SQLAlchemy, an async psycopg pool, and exactly the SQL the real request runs (captured with
SQLAlchemy's echo on one request), in one transaction: the bearer token's user and session
looked up, the assignees looked up in the family, the task and its assignee rows inserted, and
the outbox's staging statement (event + recipients + stream sequences + NOTIFY, the app's own
``app.outbox.queries.WRITE_STAGED_EVENTS``). It checks the token as the app does (PyJWT, same
secret, audience, issuer and required claims), refuses what the app refuses (another family, a
child, an ended session, an unknown assignee), and answers 201 with the same JSON.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import jwt
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.outbox.queries import WRITE_STAGED_EVENTS

SECRET = os.environ.get("APP_JWT_SECRET", "")
AUDIENCE = os.environ.get("APP_JWT_AUDIENCE", "family-app")
ISSUER = os.environ.get("APP_JWT_ISSUER", "family-app-api")
CHANNEL = os.environ.get("APP_OUTBOX_CHANNEL", "outbox_events")
# As many connections as the app's engine may hold (pool_size 10 + max_overflow 10).
POOL_MAX = int(os.environ.get("BARE_POOL_MAX", "20"))

SESSION_USER = (
    "SELECT users.id, users.family_id, users.email, users.display_name, users.role,"
    " users.password_hash, users.created_at, auth_sessions.revoked_at"
    " FROM users JOIN auth_sessions ON auth_sessions.user_id = users.id"
    " WHERE users.id = %s AND auth_sessions.id = %s"
)
MEMBERS = (
    "SELECT users.id, users.family_id, users.email, users.display_name, users.role,"
    " users.password_hash, users.created_at FROM users"
    " WHERE users.family_id = %s AND users.id IN ({})"
)
INSERT_TASK = (
    "INSERT INTO tasks (id, family_id, title, description, karma_reward, due_at, created_by,"
    " completed_by, completed_at, template_id, scheduled_for, claim_id)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING tasks.created_at"
)
INSERT_ASSIGNEE = "INSERT INTO task_assignees (task_id, user_id) VALUES (%s, %s)"

pool = AsyncConnectionPool(
    os.environ.get("DATABASE_URL", ""), min_size=1, max_size=POOL_MAX, open=False
)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def moment(value: datetime | None) -> str | None:
    """A timestamp as the app's pydantic models write it (UTC as ``Z``)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def create_task(request: Request) -> JSONResponse:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return error(401, "unauthorized", "a bearer token is required")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "sid", "aud", "iss"]},
        )
        user_id, session_id = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
        claimed_family = uuid.UUID(claims["fam"])
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        return error(401, "unauthorized", "the access token is invalid")
    family_id = uuid.UUID(request.path_params["family_id"])
    body = json.loads(await request.body())
    title, assigned_to = body["title"], [uuid.UUID(a) for a in body.get("assignedTo", [])]
    description, karma_reward = body.get("description", ""), body.get("karmaReward", 0)
    async with pool.connection() as conn:  # one transaction: committed on the way out
        row = await (await conn.execute(SESSION_USER, (user_id, session_id))).fetchone()
        if row is None or row[7] is not None or row[1] != claimed_family:
            return error(401, "unauthorized", "the token's session no longer stands")
        actor_id, actor_family, role = row[0], row[1], row[4]
        if actor_family != family_id:
            return error(404, "not_found", "family not found")
        if role != "parent":
            return error(403, "forbidden", "only parents may do this")
        wanted = list(dict.fromkeys(assigned_to))
        found: list[uuid.UUID] = []
        if wanted:
            members = MEMBERS.format(", ".join(["%s"] * len(wanted)))
            cursor = await conn.execute(members, (family_id, *wanted))
            found = [member[0] for member in await cursor.fetchall()]
            if len(found) != len(wanted):
                await conn.rollback()
                return error(404, "not_found", "some users are not members of this family")
        task_id = uuid.uuid4()
        values = (task_id, family_id, title, description, karma_reward, None, actor_id)
        cursor = await conn.execute(INSERT_TASK, (*values, None, None, None, None, None))
        created = await cursor.fetchone()
        assert created is not None
        async with conn.cursor() as cur:
            await cur.executemany(INSERT_ASSIGNEE, [(task_id, member) for member in found])
        task = {
            "id": str(task_id),
            "familyId": str(family_id),
            "title": title,
            "description": description,
            "karmaReward": karma_reward,
            "dueAt": None,
            "createdBy": str(actor_id),
            "assignedTo": [str(member) for member in found],
            "completedBy": None,
            "completedAt": None,
            "createdAt": moment(created[0]),
            "claimId": None,
        }
        payload = {
            "taskId": task["id"],
            "familyId": task["familyId"],
            "assignedTo": task["assignedTo"],
            "task": task,
        }
        event = {
            "ord": 0,
            "type": "task.created",
            "version": 1,
            "payload": payload,
            "family_id": str(family_id),
            "streams": [f"user:{member}" for member in found],
        }
        if found:
            staged = {"events": json.dumps([event]), "channel": CHANNEL}
            await conn.execute(WRITE_STAGED_EVENTS, staged)
    return JSONResponse(task, status_code=201)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await pool.open()
    try:
        yield
    finally:
        await pool.close()


app = Starlette(
    routes=[
        Route("/v1/families/{family_id}/tasks", create_task, methods=["POST"]),
        Route("/healthz", healthz),
    ],
    lifespan=lifespan,
)
