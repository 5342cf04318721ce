"""Schemathesis over the real web process's /openapi.json, as a parent and as a child (issue 9).

Every operation the schema lists gets generated requests, valid and invalid ones, each sent
over HTTP to a real uvicorn once with a parent's token and once with a child's. Path parameters
are often the family's real ids, so requests reach the handlers' logic and not only their 404s.
Every response must be no 5xx and match the schema: a documented status code, a documented
content type, a body and headers of the documented shape. Requests the schema rules out must be
refused with a 4xx, and a secured operation without a token with a 401.

Examples are few per operation and Hypothesis runs derandomized, so a run sends the same
requests every time (but for the ids the server hands out) in under a minute. A failure names
the operation, the role and a curl command that repeats the request.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.harness import Member, add_member, signup, web_process

MAX_EXAMPLES = 25
# Operations that end the caller's session or membership: each example then logs in again.
MAX_EXAMPLES_SELF_ENDING = 8
PASSWORD = "correct horse battery"  # tests.harness's, for logging in again
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
)
# Request body fields naming members: often given the family's real ids (see ``member_ids``).
MEMBER_FIELDS = ("assignedTo", "memberIds", "userId")
# Sent to every integer query parameter without a maximum (the ids and seqs behind such cursors
# are bigints): the largest bigint, one past it, and far past it; the least ones without a minimum.
BIG = (2**63 - 1, 2**63, 10**30)
SMALL = (-(2**63), -(2**63) - 1)
# Log-out, log-out everywhere, a member's removal: run last, with live tokens before each example.
SELF_ENDING = re.compile(r"^POST /v1/auth/logout|^DELETE /v1/families/\{\w+\}/members/\{\w+\}$")


@pytest.fixture
def web(database_url: str, log_dir: Path) -> Iterator[str]:
    """The conftest's web process, but with room for this suite's log-ins from 127.0.0.1.

    The fuzzed log-ins and password changes all fail from one address; the per-address limit
    would then refuse the suite's own log-ins after a log-out. The per-account limit stays.
    """
    proc, base_url = web_process(database_url, log_dir, APP_LOGIN_ATTEMPTS_PER_ADDRESS="100000")
    yield base_url
    proc.stop()


class Family:
    """The family the suite acts as: a parent, a child, and one of each resource for the paths.

    Tokens that stop working (a log-out, a removal) are replaced: a new log-in, a new child, or
    at worst a new family.
    """

    def __init__(self, base_url: str) -> None:
        self.api = httpx.Client(base_url=base_url, timeout=30)
        self.ids: dict[str, str] = {}
        self.parent, self.child = self._sign_up()
        # Operations after which a token of the suite no longer worked (and was replaced).
        self.ended_by: list[str] = []

    def _sign_up(self) -> tuple[Member, Member]:
        async def members() -> tuple[Member, Member]:
            async with httpx.AsyncClient(base_url=str(self.api.base_url), timeout=30) as api:
                parent = await signup(api, "Ada")
                return parent, await add_member(api, parent, "Kim", "child")

        parent, child = asyncio.run(members())
        family = f"/v1/families/{parent.family_id}"
        task = self._post(parent, f"{family}/tasks", {"title": "t", "assignedTo": [child.id]})
        template = self._post(
            parent,
            f"{family}/task-templates",
            {
                "title": "t",
                "assignedTo": [child.id],
                "schedule": {"kind": "weekdays", "days": ["mon"]},
            },
        )
        self._post(parent, "/v1/karma/grant", {"userId": child.id, "amount": 50, "reason": "r"})
        reward = self._post(parent, f"{family}/rewards", {"name": "r", "karmaCost": 1})
        claim = self._post(child, f"/v1/rewards/{reward['id']}/claim", None)
        chat = self._post(parent, f"{family}/chats", {"name": "c", "memberIds": [child.id]})
        self.ids = {
            "family_id": parent.family_id,
            "user_id": child.id,
            "task_id": task["id"],
            "template_id": template["id"],
            "reward_id": reward["id"],
            "claim_id": claim["id"],
            "chat_id": chat["id"],
        }
        return parent, child

    def _post(self, member: Member, path: str, body: Any) -> Any:
        response = self.api.post(path, headers=member.headers, json=body)
        assert response.status_code in (200, 201), (path, response.text)
        return response.json()

    def members(self) -> list[tuple[str, Member]]:
        return [("parent", self.parent), ("child", self.child)]

    def real_ids(self, names: list[str]) -> dict[str, str]:
        return {name: self.ids[name] for name in names if name in self.ids}

    def _alive(self, member: Member) -> bool:
        return self.api.get("/v1/me", headers=member.headers).status_code == 200

    def _logged_in(self, member: Member) -> Member | None:
        login = self.api.post("/v1/auth/login", json={"email": member.email, "password": PASSWORD})
        if login.status_code != 200:
            return None
        body = login.json()
        return member.with_tokens(body["accessToken"], body["refreshToken"])

    def revive(self) -> bool:
        """Make both tokens work again; False if both already did."""
        if self._alive(self.parent) and self._alive(self.child):
            return False
        parent = self.parent if self._alive(self.parent) else self._logged_in(self.parent)
        if parent is None:
            # Removed, or its log-ins throttled by the fuzzed password changes: start afresh.
            self.parent, self.child = self._sign_up()
            return True
        self.parent = parent
        if not self._alive(self.child):
            child = self._logged_in(self.child)
            if child is None:  # removed from the family
                added = self._post(
                    parent,
                    f"/v1/families/{parent.family_id}/members",
                    {
                        "displayName": "Kim",
                        "email": f"kim-{time.monotonic_ns()}@example.com",
                        "password": PASSWORD,
                        "role": "child",
                    },
                )
                stub = Member(added["id"], parent.family_id, added["email"], "", "child")
                child = self._logged_in(stub)
                assert child is not None
                self.ids["user_id"] = child.id
            self.child = child
        return True


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def member_ids(body: Any, family: Family) -> Any:
    """``body`` with the family's member ids wherever generated ones (valid UUIDs) name members."""
    if not isinstance(body, dict):
        return body
    ids = [family.child.id, family.parent.id]
    real = dict(body)
    for name in MEMBER_FIELDS:
        value = body.get(name)
        if is_uuid(value):
            real[name] = family.child.id
        elif isinstance(value, list) and value and all(is_uuid(item) for item in value):
            real[name] = [ids[i % 2] for i in range(len(value))]
    return real


def cases(operation: Any, family: Family) -> st.SearchStrategy[Any]:
    """Valid and invalid requests; half of them with the family's real ids in the path."""
    names = [parameter.name for parameter in operation.path_parameters]
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(mode))
        if family.real_ids(names):
            # Built at each draw: the ids of the family in use at that moment.
            strategies.append(
                st.just(mode).flatmap(
                    lambda mode: operation.as_strategy(mode, path_parameters=family.real_ids(names))
                )
            )
    return st.one_of(strategies)


def unbounded_integers(operation: Any) -> Iterator[tuple[str, int]]:
    """(query parameter, value) beyond the bounds the schema leaves open, for its integers."""
    for parameter in operation.query:
        schema = parameter.definition.get("schema", {})
        for branch in [schema, *schema.get("anyOf", [])]:
            if branch.get("type") == "integer":
                values = (() if "maximum" in branch else BIG) + (
                    () if "minimum" in branch else SMALL
                )
                yield from ((parameter.name, value) for value in values)


def call(case: Any, base_url: str, role: str, member: Member) -> Any:
    """The response to ``case`` sent with ``member``'s token, checked; a failure names the role."""
    try:
        return case.call_and_validate(base_url=base_url, headers=member.headers)
    except (Exception, BaseExceptionGroup) as error:  # schemathesis' FailureGroup is the latter
        failure = str(error)
    pytest.fail(f"as the {role}: {failure}", pytrace=False)


def fuzz(operation: Any, family: Family, base_url: str) -> None:
    """Run the generated requests of one operation as the parent and as the child."""
    label: str = operation.label
    self_ending = bool(SELF_ENDING.search(label))

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES_SELF_ENDING if self_ending else MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        # No shrinking: a failing example is reported as found, with a curl to repeat it.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=cases(operation, family))
    def requests(case: Any) -> None:
        if self_ending:
            family.revive()
        for role, member in family.members():
            response = call(case, base_url, role, member)
            if response.status_code == 401 and not self_ending and family.revive():
                family.ended_by.append(label)

    requests()
    # The edges Hypothesis seldom draws, with the real ids: each request once per role.
    names = [parameter.name for parameter in operation.path_parameters]
    path = {name: str(uuid.UUID(int=1)) for name in names} | family.real_ids(names)
    for name, value in unbounded_integers(operation):
        case = operation.Case(path_parameters=path, query={name: value})
        for role, member in family.members():
            call(case, base_url, role, member)


@pytest.mark.timeout(600)
def test_every_operation_answers_as_documented(web: str, subtests: Any) -> None:
    family = Family(web)
    config = schemathesis.Config.from_dict(
        {
            # Unknown query parameters are ignored, as HTTP APIs do: not a request to refuse.
            # Requests without a token are ignored_auth's to send, for every secured operation;
            # the generated ones all carry the parent's or the child's.
            "generation": {
                "allow-extra-parameters": False,
                "with-security-parameters": False,
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    )
    schema = schemathesis.openapi.from_url(f"{web}/openapi.json", config=config)

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
        # Drawn per example: as generated (mostly unknown members) or naming the real members.
        return st.sampled_from([body, member_ids(body, family)])

    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions after the rest, so the family's task and template live through their operations.
    operations.sort(
        key=lambda operation: (
            bool(SELF_ENDING.search(operation.label)),
            operation.method.upper() == "DELETE",
        )
    )
    assert len(operations) > 30, [operation.label for operation in operations]
    timings = []
    for operation in operations:
        started = time.monotonic()
        with subtests.test(msg=operation.label):
            fuzz(operation, family, web)
        timings.append((time.monotonic() - started, operation.label))
    family.api.close()
    print("slowest:", ", ".join(f"{label} {s:.1f}s" for s, label in sorted(timings)[-5:]))
    assert family.ended_by == [], (
        f"these operations ended the suite's session: {family.ended_by}; if that is their job,"
        " add them to SELF_ENDING"
    )
