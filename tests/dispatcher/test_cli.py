"""The ``outbox`` operator CLI, run as a real subprocess against a real database."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, LiteralString

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dispatcher.liveness import LIVENESS_LOCK_CLASS
from tests.harness import ManagedProcess, free_port
from tests.harness import outbox_cli as cli
from tests.harness import outbox_cli_json as cli_json

PAYLOAD = {"title": "dishes"}
ERRORS = [
    {"at": "2026-01-01T00:00:00+00:00", "attempt": 1, "owner": "d1", "error": "timeout"},
    {"at": "2026-01-01T00:01:00+00:00", "attempt": 2, "owner": "d2", "error": "refused"},
]


def insert(
    database_url: str,
    *,
    type_: str = "task.created",
    status: str = "pending",
    age: str = "1 second",
    delivered_age: str = "1 minute",
    attempts: int = 0,
    errors: list[dict[str, Any]] | None = None,
    streams: tuple[str, ...] = ("user:u1",),
    due_in: str = "0 seconds",
) -> int:
    """One outbox row created ``age`` ago, due ``due_in`` from now, with its recipients."""
    errors = errors or []
    last_error = errors[-1]["error"] if errors else None
    delivered = delivered_age if status == "delivered" else None
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO outbox_events (type, version, payload, status, attempts, created_at,"
            " last_error, errors, delivered_at, next_attempt_at) VALUES (%s, 1, %s, %s, %s,"
            " now() - %s::interval, %s, %s, now() - %s::interval, now() + %s::interval)"
            " RETURNING id",
            (
                type_,
                Jsonb(PAYLOAD),
                status,
                attempts,
                age,
                last_error,
                Jsonb(errors),
                delivered,
                due_in,
            ),
        ).fetchone()
        assert row is not None
        for stream in streams:
            conn.execute(
                "INSERT INTO outbox_recipients (stream, seq, event_id) SELECT %s,"
                " coalesce(max(seq), 0) + 1, %s FROM outbox_recipients WHERE stream = %s",
                (stream, row[0], stream),
            )
        return int(row[0])


def rows(
    database_url: str, query: LiteralString = "SELECT * FROM outbox_events ORDER BY id"
) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


def by_id(database_url: str) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in rows(database_url)}


def test_stats_counts_backlog_dead_delivered_and_per_type(database_url: str) -> None:
    insert(database_url, age="1 hour")
    insert(database_url, type_="karma.awarded")
    insert(database_url, status="dead", attempts=10, errors=ERRORS)
    for _ in range(3):
        insert(database_url, status="delivered", age="2 hours", delivered_age="1 hour")

    stats = cli_json(database_url, "stats")

    assert (stats["pending"], stats["dead"], stats["delivered"]) == (2, 1, 3)
    assert 3590 < stats["oldest_pending_seconds"] < 3700
    per_type = {(e["type"], e["status"]): e["count"] for e in stats["per_type"]}
    assert per_type == {
        ("karma.awarded", "pending"): 1,
        ("task.created", "dead"): 1,
        ("task.created", "delivered"): 3,
        ("task.created", "pending"): 1,
    }


def test_list_filters_by_status_type_age_and_recipient(database_url: str) -> None:
    old = insert(database_url, age="2 hours", streams=("user:u1", "chat:c1"))
    dead = insert(database_url, status="dead", errors=ERRORS, streams=("user:u2",))
    karma = insert(database_url, type_="karma.awarded", age="5 minutes")

    def ids(*args: str) -> list[int]:
        return [row["id"] for row in cli_json(database_url, "list", *args)]

    assert ids() == [karma, dead, old]
    assert ids("--status", "dead") == [dead]
    assert ids("--type", "karma.awarded") == [karma]
    assert ids("--older-than", "1h") == [old]
    assert ids("--newer-than", "10m") == [karma, dead]
    assert ids("--recipient", "chat:c1") == [old]
    assert ids("--limit", "1") == [karma]
    [listed] = cli_json(database_url, "list", "--status", "dead")
    assert listed["last_error"] == "refused"
    assert listed["recipients"] == [{"stream": "user:u2", "seq": 1}]


def test_show_gives_payload_recipients_and_error_history(database_url: str) -> None:
    insert(database_url, streams=("user:u1",))
    event_id = insert(database_url, status="dead", errors=ERRORS, streams=("user:u1", "chat:c1"))

    shown = cli_json(database_url, "show", str(event_id))

    assert shown["id"] == event_id
    assert shown["status"] == "dead"
    assert shown["payload"] == PAYLOAD
    assert shown["recipients"] == [{"stream": "chat:c1", "seq": 1}, {"stream": "user:u1", "seq": 2}]
    assert shown["errors"] == ERRORS
    assert datetime.fromisoformat(shown["created_at"]).isoformat() == shown["created_at"]


def test_show_unknown_id_exits_1(database_url: str) -> None:
    result = cli(database_url, "show", "424242")
    assert result.returncode == 1
    assert "424242" in result.stderr
    assert result.stdout == ""


def test_replay_by_id_makes_dead_row_pending_and_keeps_history(database_url: str) -> None:
    target = insert(database_url, status="dead", attempts=10, errors=ERRORS)
    other = insert(database_url, status="dead", attempts=10, errors=ERRORS)
    leased = insert(database_url, attempts=3)  # a running dispatcher is sending it right now
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE outbox_events SET claimed_by = 'd1', claim_token = gen_random_uuid(),"
            " lease_expires_at = now() + interval '1 minute' WHERE id = %s",
            (leased,),
        )

    result = cli_json(database_url, "replay", str(target), str(leased))

    assert (result["replayed"], result["skipped"]) == ([target], [leased])
    after = by_id(database_url)
    assert (after[leased]["claimed_by"], after[leased]["attempts"]) == ("d1", 3)
    assert (after[target]["status"], after[target]["attempts"]) == ("pending", 0)
    assert after[target]["errors"] == ERRORS
    assert after[target]["last_error"] == "refused"
    assert (after[other]["status"], after[other]["attempts"]) == ("dead", 10)


def test_replay_by_id_of_delivered_row_needs_include_delivered(database_url: str) -> None:
    delivered = insert(database_url, status="delivered")

    assert cli(database_url, "replay", str(delivered)).returncode == 2
    assert by_id(database_url)[delivered]["status"] == "delivered"
    assert cli(database_url, "replay", "999999").returncode == 1

    cli_json(database_url, "replay", str(delivered), "--include-delivered")
    assert by_id(database_url)[delivered]["status"] == "pending"
    assert by_id(database_url)[delivered]["delivered_at"] is None


def test_filter_replay_dry_run_changes_nothing(database_url: str) -> None:
    dead = [insert(database_url, status="dead", attempts=10, errors=ERRORS) for _ in range(3)]
    insert(database_url, status="delivered")
    before = rows(database_url)

    result = cli_json(database_url, "replay", "--status", "dead", "--dry-run")

    assert (result["dry_run"], result["count"], result["ids"]) == (True, 3, dead)
    assert rows(database_url) == before


def test_filter_replay_replays_matching_rows_in_rate_limited_chunks(database_url: str) -> None:
    matching = [insert(database_url, status="dead", age="2 hours", errors=ERRORS) for _ in range(3)]
    recent = insert(database_url, status="dead", age="1 minute", errors=ERRORS)
    other_type = insert(database_url, type_="karma.awarded", status="dead", age="2 hours")
    delivered = insert(database_url, status="delivered", age="2 hours", delivered_age="1 hour")

    filters = ["--status", "dead", "--type", "task.created", "--older-than", "1h"]
    result = cli(database_url, "replay", *filters, "--rate", "2", "--json")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["replayed"] == matching
    assert result.stderr.count("replay: ") == 2  # two chunks of at most 2 rows
    after = by_id(database_url)
    assert all(after[i]["status"] == "pending" for i in matching)
    assert after[recent]["status"] == after[other_type]["status"] == "dead"
    assert after[delivered]["status"] == "delivered"


@pytest.mark.parametrize(
    "args", [["replay"], ["replay", "--status", "delivered"], ["replay", "--type", "x"]]
)
def test_filter_replay_refuses_unbounded_or_delivered_selection(
    database_url: str, args: list[str]
) -> None:
    insert(database_url, status="delivered")
    insert(database_url, status="dead")
    before = rows(database_url)

    result = cli(database_url, *args)

    assert result.returncode == 2, result.stderr
    assert rows(database_url) == before


def test_purge_deletes_only_delivered_rows_older_than_window(database_url: str) -> None:
    streams = ("user:u1", "chat:c1")
    old = [
        insert(database_url, status="delivered", age="9 days", delivered_age="8 d", streams=streams)
        for _ in range(3)
    ]
    recent = insert(database_url, status="delivered", age="9 days", delivered_age="6 days")
    dead = insert(database_url, status="dead", age="9 days")
    pending = insert(database_url, age="9 days")

    result = cli_json(database_url, "purge", "--older-than", "7d", "--batch-size", "2")

    assert result["deleted"] == len(old)
    assert sorted(by_id(database_url)) == [recent, dead, pending]
    remaining = rows(database_url, "SELECT event_id FROM outbox_recipients")
    assert {r["event_id"] for r in remaining} == {recent, dead, pending}


@pytest.mark.parametrize("args", [["purge", "--older-than", "7x"], ["list", "--newer-than", "1y"]])
def test_bad_duration_exits_2(database_url: str, args: list[str]) -> None:
    insert(database_url, status="delivered", age="9 days", delivered_age="8 days")
    result = cli(database_url, *args)
    assert result.returncode == 2
    assert "duration" in result.stderr
    assert len(rows(database_url)) == 1


def test_unreachable_database_exits_1_with_one_line() -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"

    result = cli(closed, "stats")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: database: connection failed")


def cli_until(database_url: str, *args: str, until: Callable[[Any], bool]) -> Any:
    """The command's JSON, once ``until`` holds for it (polled for up to 15 s)."""
    deadline = time.monotonic() + 15
    while not until(result := cli_json(database_url, *args)):
        if time.monotonic() > deadline:
            raise AssertionError(f"outbox {' '.join(args)} never as expected: {result}")
        time.sleep(0.2)
    return result


def claim(database_url: str, event_id: int, owner: str, lease: str) -> None:
    """Put a row under ``owner``'s claim, its lease running out ``lease`` from now."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE outbox_events SET claimed_by = %s, claim_token = gen_random_uuid(),"
            " lease_expires_at = now() + %s::interval WHERE id = %s",
            (owner, lease, event_id),
        )


def table_rows(output: str) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of each row of a rich table, as printed."""
    lines = output.splitlines()
    [header] = [line.split("┃")[1:-1] for line in lines if line.startswith("┃")]
    body = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    return [cell.strip() for cell in header], [[cell.strip() for cell in row] for row in body]


WIDE = {"COLUMNS": "250"}  # no wrapped cells in the tables


def test_workers_shows_a_running_dispatcher_live_and_a_killed_one_not(
    database_url: str, dispatcher: ManagedProcess
) -> None:
    assert dispatcher.process is not None
    pid = dispatcher.process.pid
    host = socket.gethostname()

    [worker] = cli_until(database_url, "workers", until=lambda workers: len(workers) > 0)

    assert (worker["pid"], worker["host"], worker["live"]) == (pid, host, True)
    assert worker["owner"].startswith(f"{host}:{pid}:")
    assert 0 <= worker["heartbeat_age_seconds"] < 5
    assert (worker["leased_rows"], worker["earliest_lease_expires_at"]) == (0, None)
    owner = worker["owner"]
    # Leases of its own: two live ones count, a dead row's does not. Not yet due, the rows are
    # left alone by the dispatcher until claimed, and under a live lease after that.
    soon, later = insert(database_url, due_in="1 hour"), insert(database_url, due_in="1 hour")
    dead = insert(database_url, status="dead")
    claim(database_url, soon, owner, "1 hour")
    claim(database_url, later, owner, "2 hours")
    claim(database_url, dead, owner, "1 hour")

    [worker] = cli_json(database_url, "workers")

    assert worker["leased_rows"] == 2
    expiry = by_id(database_url)[soon]["lease_expires_at"]
    assert datetime.fromisoformat(worker["earliest_lease_expires_at"]) == expiry
    assert 3500 < worker["earliest_lease_expires_in_seconds"] <= 3600
    shown = cli(database_url, "workers", **WIDE)
    assert shown.returncode == 0, shown.stderr
    header, [row] = table_rows(shown.stdout)
    assert header[:6] == ["owner", "host", "pid", "started", "heartbeat", "live"]
    assert row[:3] + row[5:7] == [owner, host, str(pid), "yes", "2"]

    dispatcher.kill()

    # No other dispatcher runs to forget it (or expire its leases): its row stays, not live.
    [worker] = cli_until(database_url, "workers", until=lambda workers: not workers[0]["live"])
    assert (worker["owner"], worker["pid"], worker["live"]) == (owner, pid, False)
    assert worker["leased_rows"] == 2
    shown = cli(database_url, "workers", **WIDE)
    assert shown.returncode == 0, shown.stderr
    _, [row] = table_rows(shown.stdout)
    assert (row[0], row[5]) == (owner, "no")
    stale = cli_json(database_url, "stale")
    assert {r["id"]: r["reasons"] for r in stale} == {
        soon: ["owner_not_live"],
        later: ["owner_not_live"],
    }


def test_stale_shows_rows_of_gone_owners_expired_leases_and_failing_rows(
    database_url: str,
) -> None:
    insert(database_url)  # a healthy pending row
    empty = cli(database_url, "stale")
    assert (empty.returncode, empty.stdout) == (0, "No stale rows.\n")
    assert cli_json(database_url, "stale") == []

    live_owner = "live:1:y"
    with psycopg.connect(database_url, autocommit=True) as live_session:
        # What a running dispatcher's liveness session holds.
        live_session.execute(
            "SELECT pg_advisory_lock_shared(%s, hashtext(%s))", (LIVENESS_LOCK_CLASS, live_owner)
        )
        leased = insert(database_url)
        claim(database_url, leased, live_owner, "1 hour")
        gone = insert(database_url)
        claim(database_url, gone, "gone:1:x", "1 hour")  # its lease has not run out
        expired = insert(database_url)
        claim(database_url, expired, live_owner, "-1 minute")
        failing = insert(database_url, attempts=2, errors=ERRORS)
        dead = insert(database_url, status="dead", attempts=10, errors=ERRORS)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE outbox_events SET failing_since = now() - interval '1 minute',"
                " next_attempt_at = now() + interval '1 minute' WHERE id = ANY(%s)",
                ([failing, dead],),
            )

        stale = cli_json(database_url, "stale")

        assert [(r["id"], r["reasons"]) for r in stale] == [
            (gone, ["owner_not_live"]),
            (expired, ["lease_expired"]),
            (failing, ["failing"]),
        ]
        by_event = {r["id"]: r for r in stale}
        assert by_event[gone]["claimed_by"] == "gone:1:x"
        assert by_event[gone]["lease_expires_in_seconds"] > 3500
        assert -70 < by_event[expired]["lease_expires_in_seconds"] < -50
        assert by_event[failing]["failing_since"] is not None
        assert (by_event[failing]["attempts"], by_event[failing]["last_error"]) == (2, "refused")
        assert [r["id"] for r in cli_json(database_url, "stale", "--limit", "1")] == [gone]
        shown = cli(database_url, "stale", **WIDE)
        assert shown.returncode == 0, shown.stderr
        header, listed = table_rows(shown.stdout)
        assert header[:4] == ["id", "type", "attempts", "why"]
        assert [(row[0], row[3]) for row in listed] == [
            (str(gone), "owner not live"),
            (str(expired), "lease expired"),
            (str(failing), "failing"),
        ]

    # Its session gone, the live owner's claims are a dead dispatcher's too.
    stale = cli_until(database_url, "stale", until=lambda rows: len(rows) == 4)
    assert {r["id"]: r["reasons"] for r in stale} == {
        gone: ["owner_not_live"],
        leased: ["owner_not_live"],
        expired: ["lease_expired", "owner_not_live"],
        failing: ["failing"],
    }
