"""The server settings of the drain pool's sessions (``dispatcher.__main__.connection_options``)."""

from __future__ import annotations

import psycopg

from dispatcher.__main__ import connection_options
from dispatcher.settings import DispatcherSettings


async def test_drain_sessions_never_jit_compile(database_url: str) -> None:
    """The delivery transaction's statements are small; compiling one costs more than it saves."""
    options = connection_options(DispatcherSettings())
    async with await psycopg.AsyncConnection.connect(database_url, options=options) as conn:
        cur = await conn.execute("SELECT current_setting('jit')")
        assert await cur.fetchone() == ("off",)
