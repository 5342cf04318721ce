"""``outbox``: the operator's console over the outbox (stats, list, show, replay, purge), the
dispatchers (``workers``) and stuck rows (``stale``), the Web Push queue (stats,
``list --push``) and VAPID keys (``vapid-keys``)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar

import psycopg
import pydantic
import typer
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from app.settings import Settings, get_settings
from app.vapid_keys import generate_key_pair
from dispatcher import operations
from dispatcher.operations import EventFilter

# Tracebacks with locals would print the database URL, password included.
app = typer.Typer(
    help="Inspect and repair the transactional outbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")
DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
CONNECT_TIMEOUT_SECONDS = 10
ERROR_WIDTH = 60


class StatusChoice(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"


def parse_duration(value: str) -> timedelta:
    """``30s``, ``10m``, ``2h`` or ``7d`` as a timedelta."""
    match = DURATION.match(value)
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration like 30s, 10m, 2h or 7d")
    return timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})


def parse_recipient(value: str) -> str:
    """A stream name such as ``user:<id>`` or ``chat:<id>``."""
    kind, _, ident = value.partition(":")
    if not kind or not ident:
        raise typer.BadParameter(f"{value!r} is not a stream like user:<id> or chat:<id>")
    return value


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="Postgres URL; defaults to the app settings.",
    ),
]
StatusOpt = Annotated[StatusChoice | None, typer.Option("--status", help="Only this status.")]
TypeOpt = Annotated[str | None, typer.Option("--type", help="Only this event type.")]
OlderThanOpt = Annotated[
    timedelta | None,
    typer.Option("--older-than", parser=parse_duration, help="Created before now minus this."),
]
NewerThanOpt = Annotated[
    timedelta | None,
    typer.Option("--newer-than", parser=parse_duration, help="Created within this window."),
]
RecipientOpt = Annotated[
    str | None,
    typer.Option("--recipient", parser=parse_recipient, help="Only rows sent to this stream."),
]


def settings() -> Settings:
    try:
        return get_settings()
    except pydantic.ValidationError as exc:
        fail(f"invalid settings: {one_line(str(exc))}")


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run(
    database_url: str | None,
    work: Callable[[AsyncConnection[Any]], Coroutine[Any, Any, T]],
) -> T:
    """Run ``work`` on an autocommit connection; database failures become one line and exit 1."""
    url = database_url or settings().database_url

    async def main() -> T:
        # libpq waits forever on an unreachable host unless told otherwise.
        conninfo = url
        if "connect_timeout" not in conninfo_to_dict(url):
            conninfo = make_conninfo(url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
            return await work(conn)

    try:
        return asyncio.run(main())
    except psycopg.Error as exc:
        fail(f"database: {one_line(str(exc)) or type(exc).__name__}")


def to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=to_json, indent=2))


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its recipients as ``{stream, seq}`` objects."""
    return {**row, "recipients": [{"stream": s, "seq": q} for s, q in row["recipients"]]}


def age(seconds: float) -> str:
    """``95`` as ``1m 35s``: the two largest units."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    first = next((i for i, (n, _) in enumerate(parts) if n), len(parts) - 1)
    return " ".join(f"{n}{unit}" for n, unit in parts[first : first + 2])


def when(value: datetime | None, *, short: bool = False) -> str:
    """A UTC time; ``short`` drops the year, for tables."""
    layout = "%m-%d %H:%M:%SZ" if short else "%Y-%m-%d %H:%M:%SZ"
    return value.astimezone(UTC).strftime(layout) if value else "-"


def truncate(value: str | None, width: int = ERROR_WIDTH) -> str:
    text = one_line(value or "")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(*columns: str, title: str | None = None) -> Table:
    result = Table(title=title)
    for column in columns:
        result.add_column(column)
    return result


def row_of(*cells: object) -> list[Text]:
    # Text keeps payloads and errors from being read as rich markup.
    return [Text("-" if cell is None else str(cell)) for cell in cells]


def events_table(rows: list[dict[str, Any]]) -> Table:
    # Rich narrows the widest columns first, so on a small terminal the free text gives way.
    result = table(
        "id", "type", "status", "attempts", "created", "next attempt", "recipients", "last error"
    )
    for row in rows:
        result.add_row(
            *row_of(
                row["id"],
                row["type"],
                row["status"],
                row["attempts"],
                when(row["created_at"], short=True),
                when(row["next_attempt_at"], short=True) if row["status"] == "pending" else "-",
                truncate(", ".join(stream for stream, _ in row["recipients"]), 40),
                truncate(row["last_error"]) or "-",
            )
        )
    return result


def push_table(rows: list[dict[str, Any]]) -> Table:
    result = table(
        "id", "event", "type", "status", "attempts", "created", "next attempt", "recipient",
        "push service", "last error",
    )  # fmt: skip
    for row in rows:
        result.add_row(
            *row_of(
                row["id"],
                row["event_id"],
                row["type"],
                row["status"],
                row["attempts"],
                when(row["created_at"], short=True),
                when(row["next_attempt_at"], short=True) if row["status"] == "pending" else "-",
                f"user:{row['user_id']}",
                row["push_service"],
                truncate(row["last_error"]) or "-",
            )
        )
    return result


def selection_of(
    status: StatusChoice | None,
    type_: str | None,
    older_than: timedelta | None,
    newer_than: timedelta | None,
    recipient: str | None,
) -> EventFilter:
    return EventFilter(
        status=status.value if status else None,
        type=type_,
        older_than=older_than,
        newer_than=newer_than,
        recipient=recipient,
    )


@app.command()
def stats(json_output: JsonOpt = False, database_url: DatabaseUrlOpt = None) -> None:
    """Backlog, oldest pending age, dead and delivered counts, and counts per type and status.

    The same for the Web Push queue follows (under ``push`` in JSON).
    """

    async def work(conn: AsyncConnection[Any]) -> dict[str, Any]:
        return {**await operations.stats(conn), "push": await operations.push_stats(conn)}

    result = run(database_url, work)
    if json_output:
        print_json(result)
        return
    console = Console()
    oldest = result["oldest_pending_seconds"] if result["pending"] else None
    console.print(f"pending (backlog): {result['pending']}")
    console.print(f"oldest pending:    {age(oldest) if oldest is not None else '-'}")
    console.print(f"dead:              {result['dead']}")
    console.print(f"delivered:         {result['delivered']}")
    counts: dict[str, dict[str, int]] = {}
    for entry in result["per_type"]:
        counts.setdefault(entry["type"], {})[entry["status"]] = entry["count"]
    per_type = table("type", *StatusChoice, title="per type")
    for type_name, by_status in counts.items():
        per_type.add_row(*row_of(type_name, *(by_status.get(s, 0) for s in StatusChoice)))
    console.print(per_type)
    push = result["push"]
    oldest = push["oldest_pending_seconds"] if push["pending"] else None
    console.print(f"web push: {push['subscriptions']} subscriptions")
    console.print(f"  pending (backlog): {push['pending']}")
    console.print(f"  oldest pending:    {age(oldest) if oldest is not None else '-'}")
    console.print(f"  dead:              {push['dead']}")
    console.print(f"  sent:              {push['sent']}")
    push_counts: dict[str, dict[str, int]] = {}
    for entry in push["per_type"]:
        push_counts.setdefault(entry["type"], {})[entry["status"]] = entry["count"]
    push_statuses = ("pending", "sent", "dead")
    push_per_type = table("type", *push_statuses, title="web push per type")
    for type_name, by_status in push_counts.items():
        push_per_type.add_row(*row_of(type_name, *(by_status.get(s, 0) for s in push_statuses)))
    console.print(push_per_type)


@app.command("list")
def list_command(
    status: StatusOpt = None,
    type_: TypeOpt = None,
    older_than: OlderThanOpt = None,
    newer_than: NewerThanOpt = None,
    recipient: RecipientOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, newest first.")] = 50,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="List Web Push deliveries instead (--status delivered means sent;"
            " --recipient takes user:<id>).",
        ),
    ] = False,
    json_output: JsonOpt = False,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Rows matching the filters, newest first."""
    if push:
        push_statuses: dict[StatusChoice, operations.PushStatus] = {
            StatusChoice.pending: "pending",
            StatusChoice.delivered: "sent",
            StatusChoice.dead: "dead",
        }
        push_selection = operations.PushFilter(
            status=push_statuses[status] if status is not None else None,
            type=type_,
            older_than=older_than,
            newer_than=newer_than,
            recipient=recipient,
        )
        push_rows = run(
            database_url,
            lambda conn: operations.list_push_deliveries(conn, push_selection, limit=limit),
        )
        if json_output:
            print_json(push_rows)
        elif push_rows:
            Console().print(push_table(push_rows))
        else:
            typer.echo("No matching push deliveries.")
        return
    selection = selection_of(status, type_, older_than, newer_than, recipient)
    rows = run(database_url, lambda conn: operations.list_events(conn, selection, limit=limit))
    if json_output:
        print_json([plain(row) for row in rows])
    elif rows:
        Console().print(events_table(rows))
    else:
        typer.echo("No matching events.")


@app.command()
def show(
    event_id: Annotated[int, typer.Argument(help="The event id.")],
    json_output: JsonOpt = False,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """One row: every field, its payload, its recipients and its error history."""
    row = run(database_url, lambda conn: operations.get_event(conn, event_id))
    if row is None:
        fail(f"no outbox event with id {event_id}")
    if json_output:
        print_json(plain(row))
        return
    console = Console()
    fields = table("field", "value", title=f"event {event_id}")
    for name in (
        "id", "type", "version", "status", "attempts", "family_id", "created_at",
        "next_attempt_at", "delivered_at", "claimed_by", "lease_expires_at", "last_error",
    ):  # fmt: skip
        value = row[name]
        fields.add_row(*row_of(name, when(value) if isinstance(value, datetime) else value))
    console.print(fields)
    recipients = table("stream", "seq", title="recipients")
    for stream, seq in row["recipients"]:
        recipients.add_row(*row_of(stream, seq))
    console.print(recipients)
    console.print("payload:")
    console.print(Syntax(json.dumps(row["payload"], indent=2, ensure_ascii=False), "json"))
    errors = table("at", "attempt", "owner", "error", title="error history")
    for error in row["errors"]:
        errors.add_row(
            *row_of(error.get("at"), error.get("attempt"), error.get("owner"), error.get("error"))
        )
    console.print(errors if row["errors"] else "error history: none")


@app.command()
def replay(
    event_ids: Annotated[
        list[int] | None, typer.Argument(help="Event ids; or select rows with the filters.")
    ] = None,
    status: StatusOpt = None,
    type_: TypeOpt = None,
    older_than: OlderThanOpt = None,
    newer_than: NewerThanOpt = None,
    recipient: RecipientOpt = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many, oldest first.")] = (
        None
    ),
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, change nothing.")] = False,
    rate: Annotated[float, typer.Option(help="Rows per second.")] = 100.0,
    include_delivered: Annotated[
        bool, typer.Option("--include-delivered", help="Allow re-sending delivered rows.")
    ] = False,
    json_output: JsonOpt = False,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Make rows pending again, attempts reset and error history kept, by id or by filter."""
    selection = selection_of(status, type_, older_than, newer_than, recipient)
    by_filter = selection != EventFilter()
    if rate <= 0:
        raise typer.BadParameter("must be above 0", param_hint="--rate")
    if event_ids and (by_filter or limit is not None):
        fail("give event ids or filters, not both", code=2)
    if not event_ids and not by_filter:
        fail("refusing to replay every row: give event ids or a filter such as --status dead", 2)
    if by_filter and selection.status in (None, "delivered") and not include_delivered:
        fail(
            "this selection includes delivered rows, which replay re-sends to clients:"
            " narrow it (e.g. --status dead) or add --include-delivered",
            code=2,
        )

    async def work(conn: AsyncConnection[Any]) -> dict[str, Any]:
        if event_ids:
            ids = sorted(set(event_ids))
            found = {row["id"]: row["status"] for row in await operations.events_by_id(conn, ids)}
            if unknown := [i for i in ids if i not in found]:
                fail(f"no outbox event with id {', '.join(map(str, unknown))}")
            delivered = [i for i in ids if found[i] == "delivered"]
            if delivered and not include_delivered:
                fail(
                    f"events {', '.join(map(str, delivered))} were delivered; replaying re-sends"
                    " them to clients: add --include-delivered",
                    code=2,
                )
        else:
            ids = await operations.matching_ids(conn, selection, limit=limit)
        if dry_run:
            preview = await operations.events_by_id(conn, ids[:50])
            return {"dry_run": True, "count": len(ids), "ids": ids, "preview": preview}
        channel = settings().outbox_channel
        replayed: list[int] = []
        chunk = max(1, min(int(rate), 1000))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for start in range(0, len(ids), chunk):
            if start:
                await asyncio.sleep(max(0.0, started + start / rate - loop.time()))
            replayed += await operations.replay(
                conn,
                ids[start : start + chunk],
                notify_channel=channel,
                selection=selection if by_filter else None,
            )
            done = min(start + chunk, len(ids))
            typer.echo(f"replay: {done}/{len(ids)} processed, {len(replayed)} replayed", err=True)
        done_set = set(replayed)
        return {
            "count": len(replayed),
            "replayed": replayed,
            "skipped": [i for i in ids if i not in done_set],
        }

    result = run(database_url, work)
    preview = result.pop("preview", None)
    if json_output:
        print_json(result)
    elif preview is not None:
        if preview:
            Console().print(events_table(preview))
        shown = f" (first {len(preview)} shown)" if len(preview) < result["count"] else ""
        typer.echo(f"Dry run: would replay {result['count']} events{shown}; nothing changed.")
    else:
        typer.echo(f"Replayed {result['count']} events.")
        if result["skipped"]:
            typer.echo(
                "Skipped (held by a running dispatcher, or no longer matching): "
                + ", ".join(map(str, result["skipped"]))
            )


@app.command()
def purge(
    older_than: Annotated[
        timedelta,
        typer.Option("--older-than", parser=parse_duration, help="Delivered before this long ago."),
    ],
    batch_size: Annotated[int, typer.Option(min=1, help="Rows deleted per transaction.")] = 5000,
    json_output: JsonOpt = False,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Delete delivered rows older than the window, in batches."""
    deleted = run(
        database_url,
        lambda conn: operations.purge_delivered(conn, older_than=older_than, batch_size=batch_size),
    )
    if json_output:
        print_json({"deleted": deleted, "older_than_seconds": older_than.total_seconds()})
    else:
        typer.echo(
            f"Deleted {deleted} delivered events older than {age(older_than.total_seconds())}."
        )


def until(seconds: float | None) -> str:
    """Seconds until a moment as ``in 1m 35s``, or ``3s ago`` once it has passed."""
    if seconds is None:
        return "-"
    return f"in {age(seconds)}" if seconds >= 0 else f"{age(-seconds)} ago"


@app.command()
def workers(json_output: JsonOpt = False, database_url: DatabaseUrlOpt = None) -> None:
    """The dispatchers known to the database, oldest first, and whether each is live.

    Live means its liveness lock is held. A row that is not live is a dispatcher that is gone:
    the running dispatchers delete such rows (and expire its leases) within about a second.
    """
    rows = run(database_url, operations.workers)
    if json_output:
        print_json(rows)
        return
    if not rows:
        typer.echo("No dispatchers known.")
        return
    result = table(
        "owner", "host", "pid", "started", "heartbeat", "live", "leased rows",
        "earliest lease expiry",
    )  # fmt: skip
    for row in rows:
        result.add_row(
            *row_of(
                row["owner"],
                row["host"],
                row["pid"],
                when(row["started_at"], short=True),
                f"{age(row['heartbeat_age_seconds'])} ago",
                "yes" if row["live"] else "no",
                row["leased_rows"],
                until(row["earliest_lease_expires_in_seconds"]),
            )
        )
    Console().print(result)


@app.command()
def stale(
    limit: Annotated[int, typer.Option(min=1, help="At most this many rows, oldest first.")] = 50,
    json_output: JsonOpt = False,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Pending rows that are stuck: an expired lease, an owner that is not live, or failing.

    ``reasons`` names which (lease_expired, owner_not_live, failing). Exits 0 either way.
    """
    rows = run(database_url, lambda conn: operations.stale_events(conn, limit=limit))
    if json_output:
        print_json(rows)
        return
    if not rows:
        typer.echo("No stale rows.")
        return
    result = table(
        "id", "type", "attempts", "why", "claimed by", "lease expiry", "failing since",
        "next attempt", "last error",
    )  # fmt: skip
    for row in rows:
        result.add_row(
            *row_of(
                row["id"],
                row["type"],
                row["attempts"],
                ", ".join(reason.replace("_", " ") for reason in row["reasons"]),
                row["claimed_by"],
                until(row["lease_expires_in_seconds"]),
                when(row["failing_since"], short=True),
                when(row["next_attempt_at"], short=True),
                truncate(row["last_error"]) or "-",
            )
        )
    Console().print(result)


@app.command("vapid-keys")
def vapid_keys(json_output: JsonOpt = False) -> None:
    """Generate a VAPID key pair for Web Push, as environment lines (keep the private key secret).

    The dispatcher needs APP_VAPID_PRIVATE_KEY; web processes need APP_VAPID_PUBLIC_KEY (or the
    private key, which implies it). Changing the pair invalidates every browser's subscription.
    """
    private_key, public_key = generate_key_pair()
    if json_output:
        print_json({"privateKey": private_key, "publicKey": public_key})
        return
    typer.echo(f"APP_VAPID_PRIVATE_KEY={private_key}")
    typer.echo(f"APP_VAPID_PUBLIC_KEY={public_key}")


if __name__ == "__main__":
    app(prog_name="outbox")
