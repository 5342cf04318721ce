"""The server settings of the dispatcher's sessions (``DispatcherSettings.session_options``):
the drain's, and the push sender's own pool."""

from __future__ import annotations

import psycopg

from app.push.vapid import VapidSigner
from app.vapid_keys import generate_key_pair
from dispatcher.push_sender import PushSender
from dispatcher.settings import DispatcherSettings

SESSION_SETTINGS = (
    "SELECT current_setting('jit'), current_setting('synchronous_commit'),"
    " current_setting('idle_in_transaction_session_timeout')"
)
# JIT off: the statements are small, compiling one costs more than it saves. No wait for the WAL
# flush: a lost mark only means a second delivery. A stalled transaction is cut off.
EXPECTED = ("off", "off", "5s")


async def test_drain_sessions(database_url: str) -> None:
    options = DispatcherSettings().session_options()
    async with await psycopg.AsyncConnection.connect(database_url, options=options) as conn:
        cur = await conn.execute(SESSION_SETTINGS)
        assert await cur.fetchone() == EXPECTED


async def test_push_sender_sessions(database_url: str) -> None:
    """Before: synchronous commits and a check round trip at every checkout, twice per push."""
    private_key, _ = generate_key_pair()
    sender = PushSender(
        database_url=database_url,
        settings=DispatcherSettings(),
        signer=VapidSigner(private_key, "mailto:ops@family.test"),
        allowlist=["127.0.0.1"],
    )
    async with sender.connection_pool() as pool, pool.connection() as conn:
        cur = await conn.execute(SESSION_SETTINGS)
        assert await cur.fetchone() == EXPECTED
