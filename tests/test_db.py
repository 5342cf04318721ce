"""Sessions of app.db against a real Postgres."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import statement_session

# now() is when the statement's transaction began: the statement's own start only when it runs
# in a transaction of its own (psycopg sends BEGIN on its own, before a session's first statement).
IN_ITS_OWN_TRANSACTION = text("SELECT now() = statement_timestamp(), pg_sleep(0.01)")


async def test_a_statement_session_runs_each_statement_in_a_transaction_of_its_own(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with statement_session(sessions) as session:
        alone = [(await session.execute(IN_ITS_OWN_TRANSACTION)).scalar() for _ in range(2)]
    assert alone == [True, True]
    # The pooled connection it used goes back to opening transactions for the next session.
    async with sessions() as session:
        together = [(await session.execute(IN_ITS_OWN_TRANSACTION)).scalar() for _ in range(2)]
    assert together == [False, False]
