"""Alembic environment: migrates the database named by the app's settings (DATABASE_URL)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.db import sqlalchemy_url
from app.models import metadata
from app.settings import DatabaseSettings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name)

# An explicit URL (tests pass one per template database) wins over the settings. The release
# phase needs nothing but the database: not the secrets the web process refuses to start without.
database_url = config.attributes.get("database_url") or DatabaseSettings().database_url


def run_migrations_offline() -> None:
    context.configure(
        url=sqlalchemy_url(database_url), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(database_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
