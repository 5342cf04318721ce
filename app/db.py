"""Engine and session factories, and the request dependency that owns each transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base of every ORM model."""


def sqlalchemy_url(database_url: str) -> str:
    """The libpq URL with SQLAlchemy's psycopg 3 driver selected."""
    scheme, _, rest = database_url.partition("://")
    if scheme not in {"postgres", "postgresql", "postgresql+psycopg"}:
        raise ValueError(f"unsupported database URL scheme: {scheme!r}")
    return f"postgresql+psycopg://{rest}"


def create_engine(database_url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An async engine on psycopg 3 whose pooled connections are checked before use: up to
    ``pool_size`` kept open once made, ``max_overflow`` more closed as soon as they are back."""
    return create_async_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
    )


def create_sessionmaker(
    engine: AsyncEngine, *, info: dict[str, Any] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (responses are built after it)."""
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


@asynccontextmanager
async def statement_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose statements run outside a transaction, each consistent by itself: for a
    read of one statement, two round trips fewer (psycopg's BEGIN, the ROLLBACK on close). A
    socket's connect makes three such reads, and a replay storm a thousand connects at once."""
    async with sessionmaker() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


async def transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """Open one transaction per request: commit when the handler succeeds, roll back otherwise."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session, session.begin():
        yield session


# "function" scope: the commit happens before the response is sent, so a client that got a
# 2xx can rely on the change (and its outbox event) being committed.
DbSession = Annotated[AsyncSession, Depends(transaction, scope="function")]
