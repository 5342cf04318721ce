"""Keyset pagination of the list endpoints (issue 9): every row once, in order, bounded pages.

Each list endpoint (tasks, rewards, claims, task templates, members) answers a JSON array of
at most ``limit`` rows (default 100, 1..500); while more rows follow, the response carries
``Link: <...>; rel="next"`` and ``X-Next-Cursor``. Most rows here are inserted in one SQL
statement, so they share one ``created_at`` and only the tie-breakers order them.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.support import DEADLINE_MS, log_in
from tests.harness import Member, add_member, run_sql, signup

BULK = 100  # rows inserted in one statement: one created_at for all of them
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
LINK = re.compile(r'<([^>]+)>; rel="next"')


@dataclass
class Listing:
    """One list endpoint with its rows: who lists it, the URL, the filters, the ids in order."""

    url: str
    member: Member
    expected_ids: list[str]
    filters: dict[str, str]


async def ids(database_url: str, query: str, *params: Any) -> list[str]:
    return [str(row[0]) for row in await run_sql(database_url, query, *params)]


async def oldest_first(database_url: str, table: str, family_id: str) -> list[str]:
    """The ids of the family's rows in ``table`` in the order the list endpoints promise."""
    query = f"SELECT id FROM {table} WHERE family_id = %s ORDER BY created_at, id"
    return await ids(database_url, query, family_id)


async def created(api: httpx.AsyncClient, member: Member, url: str, body: Any) -> dict[str, Any]:
    response = await api.post(url, headers=member.headers, json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def family(api: httpx.AsyncClient) -> tuple[Member, Member]:
    parent = await signup(api, "Ada")
    return parent, await add_member(api, parent, "Kim", "child")


async def tasks_listing(api: httpx.AsyncClient, database_url: str) -> Listing:
    parent, child = await family(api)
    url = f"/v1/families/{parent.family_id}/tasks"
    for n in range(3):
        await created(api, parent, url, {"title": f"api {n}", "assignedTo": [child.id]})
    await run_sql(
        database_url,
        "INSERT INTO tasks (id, family_id, title, description, karma_reward, created_by)"
        " SELECT gen_random_uuid(), %s, 'bulk ' || n, '', 0, %s FROM generate_series(1, %s) n",
        parent.family_id,
        parent.id,
        BULK,
    )
    expected = await oldest_first(database_url, "tasks", parent.family_id)
    return Listing(url, child, expected, {})


async def rewards_listing(api: httpx.AsyncClient, database_url: str) -> Listing:
    parent, child = await family(api)
    url = f"/v1/families/{parent.family_id}/rewards"
    for n in range(3):
        await created(api, parent, url, {"name": f"api {n}", "karmaCost": 1})
    await run_sql(
        database_url,
        "INSERT INTO rewards (id, family_id, name, description, karma_cost, created_by)"
        " SELECT gen_random_uuid(), %s, 'bulk ' || n, '', 1, %s FROM generate_series(1, %s) n",
        parent.family_id,
        parent.id,
        BULK,
    )
    expected = await oldest_first(database_url, "rewards", parent.family_id)
    return Listing(url, child, expected, {})


async def claims_listing(api: httpx.AsyncClient, database_url: str) -> Listing:
    """A child's pending claims, newest first; the status filter must survive the Link."""
    parent, child = await family(api)
    other_child = await add_member(api, parent, "Lou", "child")
    family_url = f"/v1/families/{parent.family_id}"
    # Karma for three claims, earned through the API.
    task = await created(
        api,
        parent,
        f"{family_url}/tasks",
        {"title": "Earn", "karmaReward": 3, "assignedTo": [child.id]},
    )
    done = await api.post(f"/v1/tasks/{task['id']}/complete", headers=child.headers)
    assert done.status_code == 200, done.text
    reward = await created(api, parent, f"{family_url}/rewards", {"name": "Ice", "karmaCost": 1})
    for _ in range(3):
        await created(api, child, f"/v1/rewards/{reward['id']}/claim", None)
    # Pending claims of this child sharing one created_at, and rows the filters must leave out.
    for member_id, status, count in (
        (child.id, "pending", BULK),
        (child.id, "approved", 5),
        (other_child.id, "pending", 5),
    ):
        await run_sql(
            database_url,
            "INSERT INTO reward_claims (id, family_id, reward_id, member_id, karma_cost, status)"
            " SELECT gen_random_uuid(), %s, %s, %s, 1, %s FROM generate_series(1, %s)",
            parent.family_id,
            reward["id"],
            member_id,
            status,
            count,
        )
    expected = await ids(
        database_url,
        "SELECT id FROM reward_claims WHERE family_id = %s AND member_id = %s"
        " AND status = 'pending' ORDER BY created_at DESC, id DESC",
        parent.family_id,
        child.id,
    )
    return Listing(f"{family_url}/claims", child, expected, {"status": "pending"})


async def templates_listing(api: httpx.AsyncClient, database_url: str) -> Listing:
    parent, child = await family(api)
    url = f"/v1/families/{parent.family_id}/task-templates"
    schedule = {"kind": "weekdays", "days": ["mon"]}
    for n in range(3):
        await created(
            api, parent, url, {"title": f"api {n}", "assignedTo": [child.id], "schedule": schedule}
        )
    await run_sql(
        database_url,
        "INSERT INTO task_templates"
        " (id, family_id, title, description, karma_reward, schedule, created_by)"
        " SELECT gen_random_uuid(), %s, 'bulk ' || n, '', 0, %s, %s"
        " FROM generate_series(1, %s) n",
        parent.family_id,
        json.dumps(schedule),
        parent.id,
        BULK,
    )
    expected = await oldest_first(database_url, "task_templates", parent.family_id)
    return Listing(url, child, expected, {})


async def members_listing(api: httpx.AsyncClient, database_url: str) -> Listing:
    parent, child = await family(api)
    await insert_members(database_url, parent.family_id, BULK)
    expected = await oldest_first(database_url, "users", parent.family_id)
    return Listing(f"/v1/families/{parent.family_id}/members", child, expected, {})


async def insert_members(database_url: str, family_id: str, count: int) -> None:
    """``count`` children in one statement; e-mails in an order unrelated to their ids."""
    await run_sql(
        database_url,
        "INSERT INTO users (id, family_id, email, display_name, role, password_hash)"
        " SELECT gen_random_uuid(), %s, md5(n::text) || '-' || n || '@bulk.example.com',"
        " 'Bulk ' || n, 'child', 'not-a-hash' FROM generate_series(1, %s) n",
        family_id,
        count,
    )


LISTINGS: dict[str, Callable[[httpx.AsyncClient, str], Awaitable[Listing]]] = {
    "tasks": tasks_listing,
    "rewards": rewards_listing,
    "claims": claims_listing,
    "task-templates": templates_listing,
    "members": members_listing,
}


@pytest.fixture(params=list(LISTINGS))
async def listing(
    request: pytest.FixtureRequest, api: httpx.AsyncClient, database_url: str
) -> Listing:
    made: Listing = await LISTINGS[request.param](api, database_url)
    assert len(made.expected_ids) > DEFAULT_LIMIT
    return made


def with_query(url: str, **params: str | int) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}?{query}" if query else url


async def walk(
    api: httpx.AsyncClient, listing: Listing, limit: int | None
) -> tuple[list[dict[str, Any]], int]:
    """Every page from the first, following ``Link: rel="next"``; the rows and the page count."""
    params: dict[str, str | int] = dict(listing.filters)
    if limit is not None:
        params["limit"] = limit
    page_size = DEFAULT_LIMIT if limit is None else limit
    url: str | None = with_query(listing.url, **params)
    rows: list[dict[str, Any]] = []
    pages = 0
    while url is not None:
        response = await api.get(url, headers=listing.member.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)
        pages += 1
        rows.extend(page)
        link, cursor = response.headers.get("link"), response.headers.get("x-next-cursor")
        if link is None:
            # The last page: no next link, no cursor, not more than a page of rows.
            assert cursor is None
            assert 0 < len(page) <= page_size
            url = None
            continue
        assert len(page) == page_size
        match = LINK.fullmatch(link)
        assert match, link
        target = urlsplit(urljoin(str(response.url), match.group(1)))
        assert target.path == listing.url
        query = parse_qs(target.query, keep_blank_values=True)
        # The next page: same size, the cursor of X-Next-Cursor, the other filters kept.
        assert query == {
            **{key: [value] for key, value in listing.filters.items()},
            "limit": [str(page_size)],
            "cursor": [cursor],
        }
        url = f"{target.path}?{target.query}"
    return rows, pages


async def test_small_pages_give_every_row_once_in_order(
    api: httpx.AsyncClient, listing: Listing
) -> None:
    rows, pages = await walk(api, listing, limit=7)
    assert [row["id"] for row in rows] == listing.expected_ids
    assert pages == -(-len(listing.expected_ids) // 7)


async def test_the_default_page_is_100_rows_and_500_is_the_most(
    api: httpx.AsyncClient, listing: Listing
) -> None:
    first = await api.get(
        with_query(listing.url, **listing.filters), headers=listing.member.headers
    )
    assert first.status_code == 200, first.text
    assert len(first.json()) == DEFAULT_LIMIT
    assert "x-next-cursor" in first.headers
    rows, pages = await walk(api, listing, limit=None)
    assert ([row["id"] for row in rows], pages) == (listing.expected_ids, 2)

    one_page = await api.get(
        with_query(listing.url, **listing.filters, limit=MAX_LIMIT), headers=listing.member.headers
    )
    assert one_page.status_code == 200, one_page.text
    assert [row["id"] for row in one_page.json()] == listing.expected_ids
    assert "link" not in one_page.headers
    assert "x-next-cursor" not in one_page.headers


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64json(value: Any) -> str:
    return b64(json.dumps(value).encode())


async def test_bad_limits_and_cursors_are_a_json_422(
    api: httpx.AsyncClient, listing: Listing
) -> None:
    headers = listing.member.headers

    async def refused(field: str, **params: str | int) -> None:
        response = await api.get(with_query(listing.url, **params), headers=headers)
        assert response.status_code == 422, (params, response.status_code, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error", params
        assert [e["loc"] for e in error["details"]["errors"]] == [["query", field]], params

    for limit in ("0", "-1", str(MAX_LIMIT + 1), "ten", "1.5", ""):
        await refused("limit", limit=limit)

    first = await api.get(with_query(listing.url, limit=1), headers=headers)
    good = first.headers.get("x-next-cursor")
    assert good, "a first page of 1 row must point at the next"
    valid = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    assert isinstance(valid, list)
    a_uuid = str(uuid.uuid4())
    for cursor in (
        "",
        "garbage!",
        "not base64 at all ~~~",
        good + "*",
        good[:-3],
        b64(b"\xff\xfe\x00"),
        b64(b"not json"),
        b64json({"createdAt": "2024-01-01T00:00:00+00:00"}),
        b64json([]),
        b64json([*valid, a_uuid]),
        b64json(valid[:-1]),
        b64json([1] * len(valid)),
        b64json([None] * len(valid)),
        b64json(["2024-01-01T00:00:00", *valid[1:]]),  # no time zone
        b64json(["0001-01-01T00:00:00+05:00", *valid[1:]]),  # before year 1 in UTC
        b64json(["9999-12-31T23:59:59-05:00", *valid[1:]]),  # after year 9999 in UTC
        b64json(["2024-02-30T00:00:00+00:00", *valid[1:]]),
        b64json([*valid[:-1], "not-a-uuid"]),
        b64json([*valid[:-1], "\x00"]),
        b64json([valid[0], "a\x00b@example.com", *valid[2:]]),  # NUL in the members' e-mail
        b64json(["\x00"] * len(valid)),
        b64(b"[" * 700),
        b64json(["x" * 2000] * len(valid)),
    ):
        await refused("cursor", cursor=cursor, limit=5)

    # A cursor past the last row is an empty last page, not an error.
    last = ["9000-01-01T00:00:00+00:00", *valid[1:]]
    if "claims" in listing.url:
        last[0] = "1971-01-01T00:00:00+00:00"  # newest first: the end is the oldest
    beyond = await api.get(with_query(listing.url, cursor=b64json(last)), headers=headers)
    assert (beyond.status_code, beyond.json()) == (200, [])
    assert "link" not in beyond.headers


async def test_openapi_documents_the_parameters_and_headers(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for name in LISTINGS:
        operation = spec["paths"][f"/v1/families/{{family_id}}/{name}"]["get"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        limit = parameters["limit"]
        assert limit["in"] == "query", name
        assert limit["description"], name
        assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, MAX_LIMIT), name
        assert limit["schema"]["default"] == DEFAULT_LIMIT, name
        assert parameters["cursor"]["in"] == "query", name
        assert parameters["cursor"]["description"], name
        headers = operation["responses"]["200"]["headers"]
        assert set(headers) == {"Link", "X-Next-Cursor"}, name
        assert all(h["description"] for h in headers.values()), name
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["type"] == (
            "array"
        ), name


# ---- the web client --------------------------------------------------------------------------


async def test_the_web_client_still_shows_every_task_and_member(
    api: httpx.AsyncClient, web: str, database_url: str, page: Page
) -> None:
    """More rows than the largest page: the client must follow the next cursor."""
    parent = await signup(api, "Ada")
    count = MAX_LIMIT + 5
    await insert_members(database_url, parent.family_id, count)
    await run_sql(
        database_url,
        "INSERT INTO tasks (id, family_id, title, description, karma_reward, created_by)"
        " SELECT gen_random_uuid(), %s, 'bulk ' || n, '', 0, %s FROM generate_series(1, %s) n",
        parent.family_id,
        parent.id,
        count,
    )
    # Last in both orders: a member added after the bulk, and a task for them after that.
    zoe = await add_member(api, parent, "Zoe", "child")
    last = await created(
        api,
        parent,
        f"/v1/families/{parent.family_id}/tasks",
        {"title": "The last one", "assignedTo": [zoe.id]},
    )

    await log_in(page, web, parent)
    await expect(page.get_by_test_id("current-user")).to_have_text("Ada (parent)")
    await expect(page.get_by_test_id("task")).to_have_count(count + 1, timeout=DEADLINE_MS)
    last_item = page.locator(f'[data-task-id="{last["id"]}"]')
    await expect(last_item).to_contain_text("for Zoe")
    # Every member (the parent, the bulk, Zoe) is a choice in the new-task form.
    await expect(page.locator('#task-assignees input[name="assignedTo"]')).to_have_count(count + 2)
    await expect(page.get_by_test_id(f"assignee-{zoe.id}")).to_be_attached()
