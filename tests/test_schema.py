"""The migrations and the ORM models describe one schema: a migrated database has exactly the
tables, columns, types, defaults, indexes and constraints the models declare."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlalchemy.pool import NullPool

import app
from app.db import Base, sqlalchemy_url

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
