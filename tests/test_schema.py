"""The migrations and the ORM models describe one schema: a migrated database has exactly the
tables, columns, types, defaults, indexes and constraints the models declare."""

from __future__ import annotations

import importlib
import pkgutil
import uuid
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

import app
from app.db import Base, sqlalchemy_url
from app.realtime import presence

# Read and written with SQL only (the outbox, the dispatcher, the login throttle): no ORM model
# describes them, so only the migrations do.
SQL_ONLY_TABLES = {
    "login_attempts",
    "outbox_events",
    "outbox_recipients",
    "outbox_workers",
    "stream_sequences",
}


def import_every_model() -> None:
    """Models live beside their features; importing every module of ``app`` registers them."""
    for module in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(module.name)


def modelled(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in SQL_ONLY_TABLES


def test_the_migrated_database_matches_the_orm_models(database_url: str) -> None:
    import_every_model()
    engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_object": modelled,
                },
            )
            drift = compare_metadata(context, Base.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert drift == [], "\n".join(map(str, drift))
    # The SQL-only list names real tables that no model describes (it cannot go stale).
    assert tables >= SQL_ONLY_TABLES
    assert not SQL_ONLY_TABLES & set(Base.metadata.tables)


def tables_read_whole(plan: Any) -> set[str]:
    """The tables an EXPLAIN (FORMAT JSON) plan scans with no index condition: every row, or
    every entry of an index, filtered one by one."""
    found = set()
    if isinstance(plan, dict):
        scan = str(plan.get("Node Type", "")).endswith("Scan") and "Relation Name" in plan
        if scan and not ("Index Cond" in plan or "Recheck Cond" in plan):
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= tables_read_whole(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= tables_read_whole(item)
    return found


def test_what_each_connect_and_disconnect_asks_of_presence_is_found_by_an_index(
    database_url: str,
) -> None:
    # Every socket's connect and disconnect run these; reading all of presence_sockets in
    # each made a web process's connects quadratic in its sockets (10,000: 10,000 rows apiece).
    someone = {"user_id": uuid.uuid4(), "family_id": uuid.uuid4(), "node_id": "n", "sid": "s"}
    statements = {
        "the family's snapshot": presence._FAMILY_ONLINE,
        "adding a socket": presence._ADD_SOCKET,
        "removing a socket": presence._REMOVE_SOCKET,
        "the user's liveness": presence._USER_IS_LIVE,
    }
    engine = create_engine(sqlalchemy_url(database_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            # With sequential scans priced out, the planner reads a whole table (or index)
            # only when no index can find the rows.
            conn.execute(text("SET enable_seqscan = off"))
            scans = {
                name: tables_read_whole(
                    conn.execute(
                        text(f"EXPLAIN (FORMAT JSON) {statement.text}"),
                        someone | {"stale": 30},
                    ).scalar()
                )
                for name, statement in statements.items()
            }
    finally:
        engine.dispose()
    assert scans == {name: set() for name in statements}
