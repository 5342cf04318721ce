"""Recurring tasks: templates over REST, daily generation with catch-up, idempotent under races."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.models  # noqa: F401  (every table: tasks' foreign keys name other domains' tables)
from app.families.models import User
from app.outbox.asyncapi import build_document
from app.recurring import generation
from app.recurring import service as recurring_service
from app.recurring.models import TaskTemplate
from app.recurring.schemas import WEEK, TaskTemplateCreate
from app.tasks import service as task_service
from doubles.socket_clients import SocketRecorder
from tests.families import new_family
from tests.harness import ManagedProcess, add_member, run_sql, signup, start_dispatcher_process

MONDAY = date(2026, 3, 2)


@dataclass
class Family:
    parent: User
    kim: User
    lou: User


async def make_family(sessions: async_sessionmaker[AsyncSession]) -> Family:
    async with sessions() as session, session.begin():
        parent, *children = await new_family(session, "Ada", "kim", "lou")
    return Family(parent, *children)


async def make_template(
    sessions: async_sessionmaker[AsyncSession],
    database_url: str,
    actor: User,
    *,
    created_at: datetime,
    **fields: Any,
) -> TaskTemplate:
    """A template as a parent creates it, then backdated as if created at ``created_at``."""
    async with sessions() as session, session.begin():
        template = await recurring_service.create_template(
            session=session,
            actor=actor,
            family_id=actor.family_id,
            data=TaskTemplateCreate.model_validate(fields),
        )
    await run_sql(
        database_url,
        "UPDATE task_templates SET created_at = %s WHERE id = %s",
        created_at,
        template.id,
    )
    return template


async def generate(
    sessions: async_sessionmaker[AsyncSession], today: date, **kwargs: Any
) -> list[uuid.UUID]:
    async with sessions() as session, session.begin():
        tasks = await generation.generate_due_tasks(session=session, today=today, **kwargs)
        return [task.id for task in tasks]


def generated_tasks(database_url: str) -> list[tuple[str, date, list[str], datetime]]:
    """(title, day, assignees, due) of every generated task, by day then title."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT t.title, t.scheduled_for, array_agg(a.user_id::text ORDER BY u.display_name),"
            " t.due_at FROM tasks t JOIN task_assignees a ON a.task_id = t.id"
            " JOIN users u ON u.id = a.user_id WHERE t.scheduled_for IS NOT NULL"
            " GROUP BY t.id ORDER BY t.scheduled_for, t.title"
        ).fetchall()
    return [(title, day, list(users), due) for title, day, users, due in rows]


def task_created_events(database_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(task id, stream, payload) of every task.created in the outbox, in commit order."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT e.payload, r.stream FROM outbox_events e"
            " JOIN outbox_recipients r ON r.event_id = e.id"
            " WHERE e.type = 'task.created' ORDER BY e.id, r.stream"
        ).fetchall()
    return [(payload["taskId"], stream, payload) for payload, stream in rows]


def days(first: date, *offsets: int) -> list[date]:
    return [first + timedelta(days=n) for n in offsets]


def midnight_after(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


async def test_generation_creates_the_scheduled_tasks_and_tells_their_assignees(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    family = await make_family(sessions)
    kim, lou = str(family.kim.id), str(family.lou.id)
    created_at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday
    trash = await make_template(
        sessions,
        database_url,
        family.parent,
        created_at=created_at,
        title="Trash",
        karma_reward=3,
        assigned_to=[family.kim.id],
        schedule={"kind": "weekdays", "days": ["fri", "mon", "wed"]},
    )
    await make_template(
        sessions,
        database_url,
        family.parent,
        created_at=created_at,
        title="Plants",
        assigned_to=[family.kim.id, family.lou.id],
        # Its cycle started the day before the template existed: 1 March is not generated.
        schedule={"kind": "every_n_days", "n": 3, "startDate": "2026-03-01"},
    )

    # Two weeks, Monday 2 to Sunday 15 March, in one run.
    created = await generate(sessions, date(2026, 3, 15))

    trash_days = days(MONDAY, 0, 2, 4, 7, 9, 11)
    plant_days = days(MONDAY, 2, 5, 8, 11)
    expected = sorted(
        [("Trash", d, [kim], midnight_after(d)) for d in trash_days]
        + [("Plants", d, [kim, lou], midnight_after(d)) for d in plant_days],
        key=lambda row: (row[1], row[0]),
    )
    assert generated_tasks(database_url) == expected
    assert len(created) == len(expected)

    # One task.created per task, to its assignees and nobody else (not the parent).
    events = task_created_events(database_url)
    assert sorted({task_id for task_id, _, _ in events}) == sorted(str(t) for t in created)
    streams = sorted((payload["task"]["title"], stream) for _, stream, payload in events)
    assert streams == sorted(
        [("Trash", f"user:{kim}")] * len(trash_days)
        + [("Plants", f"user:{kim}"), ("Plants", f"user:{lou}")] * len(plant_days)
    )
    trash_event = next(p for _, _, p in events if p["task"]["title"] == "Trash")
    assert trash_event["assignedTo"] == [kim]
    assert trash_event["familyId"] == str(family.parent.family_id)
    assert trash_event["task"]["karmaReward"] == 3
    assert trash_event["task"]["createdBy"] == str(family.parent.id)

    # Deleting a template stops it; the tasks it generated stay.
    async with sessions() as session, session.begin():
        await recurring_service.delete_template(
            session=session, actor=family.parent, template_id=trash.id
        )
    assert await generate(sessions, date(2026, 3, 20)) != []
    titles = [title for title, *_ in generated_tasks(database_url)]
    assert titles.count("Trash") == len(trash_days)
    assert titles.count("Plants") == len(plant_days) + 2  # 16 and 19 March


async def test_catch_up_after_downtime_is_capped_and_never_repeats_a_day(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    family = await make_family(sessions)
    today = date(2026, 3, 15)
    await make_template(
        sessions,
        database_url,
        family.parent,
        created_at=datetime(2026, 2, 1, 12, tzinfo=UTC),
        title="Bed",
        assigned_to=[family.kim.id],
        schedule={"kind": "weekdays", "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
    )

    # The template is six weeks old, but a run looks back 14 days at most (today included).
    await generate(sessions, today)
    assert [day for _, day, _, _ in generated_tasks(database_url)] == days(today, *range(-13, 1))
    assert await generate(sessions, today) == []

    # Down for four days: the next run creates exactly the missed ones.
    await generate(sessions, today + timedelta(days=4))
    assert [day for _, day, _, _ in generated_tasks(database_url)] == days(today, *range(-13, 5))

    # Even with its progress marker lost, a rerun inserts nothing and announces nothing.
    events_before = task_created_events(database_url)
    await run_sql(database_url, "UPDATE task_templates SET generated_through = NULL")
    assert await generate(sessions, today + timedelta(days=4)) == []
    assert task_created_events(database_url) == events_before

    # A generated task a parent deleted is not created again.
    deleted_id = events_before[-1][0]
    async with sessions() as session, session.begin():
        await task_service.delete_task(
            session=session, actor=family.parent, task_id=uuid.UUID(deleted_id)
        )
    assert await generate(sessions, today + timedelta(days=4)) == []
    assert len(generated_tasks(database_url)) == 18 - 1


async def test_two_generators_at_once_create_each_task_once(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    family = await make_family(sessions)
    for title in ("Dishes", "Homework", "Walk the dog"):
        await make_template(
            sessions,
            database_url,
            family.parent,
            created_at=datetime(2026, 3, 1, tzinfo=UTC),
            title=title,
            assigned_to=[family.kim.id, family.lou.id],
            schedule={"kind": "every_n_days", "n": 1, "startDate": "2026-03-01"},
        )

    first, second = await asyncio.gather(
        generate(sessions, date(2026, 3, 10)), generate(sessions, date(2026, 3, 10))
    )

    assert len(first) + len(second) == 3 * 10
    assert set(first).isdisjoint(second)
    tasks = generated_tasks(database_url)
    assert len(tasks) == 3 * 10
    assert len({(title, day) for title, day, _, _ in tasks}) == 3 * 10
    events = task_created_events(database_url)
    # One event per task, each to both assignees.
    assert sorted(task_id for task_id, _, _ in events) == sorted(
        str(task_id) for task_id in [*first, *second] for _ in range(2)
    )


async def test_template_api_permissions_and_validation(api: httpx.AsyncClient) -> None:
    parent = await signup(api, "Ada")
    kim = await add_member(api, parent, "Kim", "child")
    other = await signup(api, "Bob")
    other_child = await add_member(api, other, "Zed", "child")
    url = f"/v1/families/{parent.family_id}/task-templates"
    body = {
        "title": "Trash",
        "description": "Before the bin lorry",
        "karmaReward": 2,
        "assignedTo": [kim.id],
        "schedule": {"kind": "weekdays", "days": ["thu", "mon"]},
    }

    created = await api.post(url, headers=parent.headers, json=body)
    assert created.status_code == 201, created.text
    template = created.json()
    assert template["schedule"] == {"kind": "weekdays", "days": ["mon", "thu"]}
    assert (template["title"], template["assignedTo"], template["karmaReward"]) == (
        "Trash",
        [kim.id],
        2,
    )
    assert (template["familyId"], template["createdBy"]) == (parent.family_id, parent.id)
    assert template["generatedThrough"] is None
    every_other = {**body, "schedule": {"kind": "every_n_days", "n": 2, "startDate": "2026-03-01"}}
    second = await api.post(url, headers=parent.headers, json=every_other)
    assert second.status_code == 201, second.text
    assert second.json()["schedule"] == every_other["schedule"]

    listed = await api.get(url, headers=kim.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == [template["id"], second.json()["id"]]

    template_url = f"/v1/task-templates/{template['id']}"
    refused = [
        await api.post(url, headers=kim.headers, json=body),
        await api.delete(template_url, headers=kim.headers),
    ]
    assert [r.status_code for r in refused] == [403, 403]
    hidden = [
        await api.get(url, headers=other.headers),
        await api.post(url, headers=other.headers, json=body),
        await api.delete(template_url, headers=other.headers),
        await api.delete(template_url, headers=other_child.headers),
        await api.post(url, headers=parent.headers, json={**body, "assignedTo": [other_child.id]}),
        await api.delete(f"/v1/task-templates/{uuid.uuid4()}", headers=parent.headers),
    ]
    assert [r.status_code for r in hidden] == [404] * len(hidden)
    assert all(r.json()["error"]["code"] == "not_found" for r in hidden)
    assert (await api.get(url)).status_code == 401

    weekly, cyclic = body["schedule"], every_other["schedule"]
    assert isinstance(weekly, dict)
    assert isinstance(cyclic, dict)
    nonsense: list[dict[str, Any]] = [
        {**body, "title": ""},
        {**body, "assignedTo": []},
        {**body, "assignedTo": [kim.id, kim.id]},
        {**body, "assignedTo": ["not-a-uuid"]},
        {**body, "karmaReward": -1},
        {**body, "karmaReward": "5"},
        {**body, "colour": "red"},
        {key: value for key, value in body.items() if key != "schedule"},
        {**body, "schedule": {"kind": "monthly", "day": 1}},
        {**body, "schedule": {"days": ["mon"]}},
        {**body, "schedule": {**weekly, "days": []}},
        {**body, "schedule": {**weekly, "days": ["mon", "mon"]}},
        {**body, "schedule": {**weekly, "days": ["monday"]}},
        {**body, "schedule": {**weekly, "n": 2}},
        {**body, "schedule": {**cyclic, "n": 0}},
        {**body, "schedule": {**cyclic, "n": "2"}},
        {**body, "schedule": {**cyclic, "n": 1.5}},
        {**body, "schedule": {**cyclic, "n": True}},
        {**body, "schedule": {**cyclic, "startDate": "2026-02-30"}},
        {**body, "schedule": {"kind": "every_n_days", "n": 2}},
    ]
    for bad in nonsense:
        response = await api.post(url, headers=parent.headers, json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["code"] == "validation_error"

    assert (await api.delete(template_url, headers=parent.headers)).status_code == 204
    assert (await api.delete(template_url, headers=parent.headers)).status_code == 404
    remaining = await api.get(url, headers=parent.headers)
    assert [t["id"] for t in remaining.json()] == [second.json()["id"]]


def start_dispatchers(database_url: str, log_dir: Path, count: int) -> list[ManagedProcess]:
    """``count`` dispatchers started together, so their start-up generation runs race."""
    return [start_dispatcher_process(database_url, log_dir) for _ in range(count)]


def task_events(events: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [envelope for name, envelope in events if name == "task.created"]


def catalogue_validator(event_type: str) -> jsonschema.Draft202012Validator:
    """A validator of the envelope of ``event_type`` as the event catalogue describes it."""
    document = build_document()
    message = document["components"]["messages"][f"{event_type}.v1"]
    schema = {"components": document["components"], **message["payload"]}
    return jsonschema.Draft202012Validator(schema)


async def test_dispatchers_generate_missed_days_at_start_for_the_assignees_only(
    api: httpx.AsyncClient, web: str, database_url: str, log_dir: Path
) -> None:
    parent = await signup(api, "Ada")
    kim = await add_member(api, parent, "Kim", "child")
    lou = await add_member(api, parent, "Lou", "child")
    response = await api.post(
        f"/v1/families/{parent.family_id}/task-templates",
        headers=parent.headers,
        json={
            "title": "Feed the cat",
            "assignedTo": [kim.id],
            "schedule": {"kind": "weekdays", "days": list(WEEK)},
        },
    )
    assert response.status_code == 201, response.text
    # Created two days ago, never generated: the dispatchers were down since.
    await run_sql(database_url, "UPDATE task_templates SET created_at = now() - interval '2 days'")
    sockets: dict[str, SocketRecorder] = {}
    for member in (parent, kim, lou):
        sockets[member.id] = SocketRecorder(web, member.token)
        await sockets[member.id].connect()
    today = datetime.now(UTC).date()

    procs = start_dispatchers(database_url, log_dir, 2)
    try:
        for proc in procs:
            proc.wait_for_log("generated recurring tasks")
        await sockets[kim.id].wait_until(lambda events: len(task_events(events)) >= 3)
        # A later event to everybody: once it has arrived, a duplicate or stray task.created
        # committed before it would have arrived too.
        marker = await api.post(
            f"/v1/families/{parent.family_id}/tasks",
            headers=parent.headers,
            json={"title": "Marker", "assignedTo": [parent.id, kim.id, lou.id]},
        )
        assert marker.status_code == 201, marker.text
        for member in (parent, kim, lou):
            await sockets[member.id].wait_until(
                lambda events: any(
                    e["data"]["taskId"] == marker.json()["id"] for e in task_events(events)
                )
            )
    finally:
        for proc in procs:
            proc.stop()
        for recorder in sockets.values():
            await recorder.disconnect()

    validator = catalogue_validator("task.created")
    *generated, last = task_events(sockets[kim.id].events)
    assert last["data"]["taskId"] == marker.json()["id"]
    assert len(generated) == 3
    for envelope in generated:
        validator.validate(envelope)
        assert envelope["data"]["assignedTo"] == [kim.id]
        assert envelope["data"]["task"]["title"] == "Feed the cat"
    due_days = [datetime.fromisoformat(e["data"]["task"]["dueAt"]).date() for e in generated]
    assert sorted(due_days) == days(today, -1, 0, 1)  # each task is due at the end of its day
    seqs = [e["seq"] for e in [*generated, last]]
    assert seqs == list(range(seqs[0], seqs[0] + 4))
    for member in (parent, lou):
        received = [e["data"]["taskId"] for e in task_events(sockets[member.id].events)]
        assert received == [marker.json()["id"]]
