"""Wake the dispatchers after a commit that wrote outbox events: one NOTIFY, sent later, coalesced.

Why not NOTIFY in the writer's transaction: Postgres takes one global lock on its notify queue
at the commit of every transaction that notified, so concurrent writers' commits would
queue behind each other (issue 12). Here the commit only flags that a wake-up is wanted; a
thread of this process sends the NOTIFY from a connection of its own. While a NOTIFY is being
sent, any number of further commits make just one more, so N concurrent commits cost far
fewer than N notifies, and a commit that happens after a NOTIFY was sent always gets another
one (the last wake-up is never lost).

A NOTIFY is a hint, polling is the truth: a NOTIFY that fails is logged, never raised to the
writer (its request has committed); the dispatchers' poll finds the rows within an interval.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import psycopg
from psycopg import sql

from app.pg_notify import with_application_name

logger = logging.getLogger(__name__)


class Notifier(Protocol):
    """Sends one NOTIFY (raising when it cannot); ``close`` lets go of its connection."""

    def send(self) -> None: ...

    def close(self) -> None: ...


class ChannelNotifier:
    """NOTIFY on one channel from an autocommit connection of its own, opened when first
    needed and opened again after a failure."""

    def __init__(self, conninfo: str, channel: str, *, connect_timeout: int = 5) -> None:
        self._conninfo = with_application_name(conninfo, "outbox-wakeup")
        self._statement = sql.SQL("NOTIFY {}").format(sql.Identifier(channel))
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] | None = None

    def send(self) -> None:
        try:
            if self._conn is None:
                self._conn = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
                )
            self._conn.execute(self._statement)
        except Exception:
            self.close()  # the next wake-up reconnects
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class DispatcherWakeup:
    """Coalesces the commits' wake-up requests into NOTIFYs sent by one background thread.

    ``request()`` only sets a flag under a lock, so it may be called from the event loop (a
    SQLAlchemy ``after_commit`` hook) without blocking it. The thread starts with the first
    request: a process that never writes events opens no connection.
    """

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._changed = threading.Condition()
        self._wanted = False
        self._closing = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Ask for a NOTIFY after this moment (called once a transaction has committed)."""
        with self._changed:
            if self._closing:
                return  # shutting down: the dispatchers' poll finds the rows
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbox-wakeup", daemon=True)
                self._thread.start()
            self._changed.notify()

    def close(self) -> None:
        """Send the wake-up still wanted, then stop the thread and close the connection
        (blocks: call it from a thread, not the event loop)."""
        with self._changed:
            self._closing = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._notifier.close()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not (self._wanted or self._closing):
                    self._changed.wait()
                if not self._wanted:
                    return  # closing, and nothing left to send
                # Cleared before sending: a commit from now on asks again, and gets the next one.
                self._wanted = False
            try:
                self._notifier.send()
            except Exception:
                logger.warning("could not wake the dispatchers (they poll instead)", exc_info=True)


def dispatcher_wakeup(database_url: str, channel: str) -> DispatcherWakeup:
    """The wake-up of this process's writers: NOTIFY ``channel`` on ``database_url``."""
    return DispatcherWakeup(ChannelNotifier(database_url, channel))
