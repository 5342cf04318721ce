"""The operator's selections (``outbox list``, ``replay``, the push queue): SQL, values bound."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer

from dispatcher.cli import parse_duration, parse_recipient, selection_of
from dispatcher.operations import EventFilter, PushFilter


def sql_of(selection: EventFilter | PushFilter) -> tuple[str, dict[str, object]]:
    """The selection's WHERE clause as the server receives it, and its bound values."""
    where, params = selection.where()
    return where.as_string(None), params


def test_an_empty_filter_selects_every_row() -> None:
    assert sql_of(EventFilter()) == ("TRUE", {})
    assert sql_of(PushFilter()) == ("TRUE", {})


def test_every_field_narrows_the_outbox_selection_with_a_bound_value() -> None:
    where, params = sql_of(
        EventFilter(
            status="dead",
            type="karma.awarded",
            older_than=timedelta(minutes=10),
            newer_than=timedelta(days=7),
            recipient="user:42",
        )
    )
    assert where.split(" AND ")[:5] == [
        "TRUE",
        "e.status = %(status)s",
        "e.type = %(type)s",
        "e.created_at < now() - %(older_than)s",
        "e.created_at >= now() - %(newer_than)s",
    ]
    assert "r.stream = %(recipient)s" in where
    assert params == {
        "status": "dead",
        "type": "karma.awarded",
        "older_than": timedelta(minutes=10),
        "newer_than": timedelta(days=7),
        "recipient": "user:42",
    }


def test_the_push_selection_reads_the_push_queue_columns() -> None:
    where, params = sql_of(
        PushFilter(status="sent", type="chat.message.created", recipient="user:7")
    )
    assert where == (
        "TRUE AND d.status = %(status)s AND d.event_type = %(type)s"
        " AND 'user:' || s.user_id::text = %(recipient)s"
    )
    assert params == {"status": "sent", "type": "chat.message.created", "recipient": "user:7"}


def test_values_never_reach_the_sql_text() -> None:
    hostile = "x'; DROP TABLE outbox_events; --"
    for selection in (EventFilter(type=hostile, recipient=hostile), PushFilter(type=hostile)):
        where, params = sql_of(selection)
        assert hostile not in where
        assert hostile in params.values()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        (" 2 h ", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "10", "1.5h", "-3m", "10w", "m10", "10 minutes"])
def test_durations_that_are_refused(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


def test_recipients_are_stream_names() -> None:
    assert parse_recipient("user:7") == "user:7"
    assert parse_recipient("chat:abc") == "chat:abc"
    for text in ("user", "user:", ":7", ""):
        with pytest.raises(typer.BadParameter):
            parse_recipient(text)


def test_the_cli_options_become_an_event_filter() -> None:
    from dispatcher.cli import StatusChoice

    assert selection_of(StatusChoice.dead, "t", timedelta(1), None, "user:1") == EventFilter(
        status="dead", type="t", older_than=timedelta(1), recipient="user:1"
    )
    assert selection_of(None, None, None, None, None) == EventFilter()
