"""Who is online, across every web process: live sockets are rows in Postgres.

Each web process (a *node*) keeps a heartbeat row whose ``expires_at`` it pushes forward every
few seconds; a socket counts only while its node's row has not expired, so the sockets of a
crashed process stop counting by themselves and any live node reaps them. ``presence.changed``
goes to the family room when a user's first live socket connects or last one goes away; the
first/last decision is made under a per-user advisory lock in the writing transaction, and the
emit happens before that transaction commits, so two processes can neither both announce nor
announce out of order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterable

import socketio
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import statement_session
from app.realtime.models import PresenceSocket, RealtimeNode
from app.realtime.signals import PresenceChanged, PresenceSnapshot
from app.settings import Settings

logger = logging.getLogger(__name__)

# First key of the two-key advisory lock ("pres"), so user locks cannot collide with other
# advisory locks of the application.
PRESENCE_LOCK_NAMESPACE = 0x70726573


async def users_with_visible_app(
    session: AsyncSession, user_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Those of ``user_ids`` with a live socket whose app is visible (push can skip them)."""
    wanted = list(set(user_ids))
    if not wanted:
        return set()
    result = await session.scalars(
        select(PresenceSocket.user_id)
        .join(RealtimeNode, RealtimeNode.node_id == PresenceSocket.node_id)
        .where(
            PresenceSocket.user_id.in_(wanted),
            PresenceSocket.visible,
            RealtimeNode.expires_at > text("clock_timestamp()"),
        )
        .distinct()
    )
    return set(result)


_FAMILY_ONLINE = text(
    """
    SELECT DISTINCT s.user_id FROM presence_sockets s
    JOIN realtime_nodes n ON n.node_id = s.node_id
    WHERE s.family_id = :family_id AND n.expires_at > clock_timestamp()
    ORDER BY s.user_id
    """
)

_LOCK_USER = text(
    "SELECT pg_advisory_xact_lock(:namespace, hashtext(CAST(:user_id AS text)))"
).bindparams(namespace=PRESENCE_LOCK_NAMESPACE)

# A live socket of the user: on a node whose heartbeat has not expired.
_LIVE_SOCKET_OF_USER = """
    SELECT 1 FROM presence_sockets s JOIN realtime_nodes n ON n.node_id = s.node_id
    WHERE s.user_id = :user_id AND n.expires_at > clock_timestamp()
"""

_USER_IS_LIVE = text(f"SELECT EXISTS ({_LIVE_SOCKET_OF_USER})")

# One round trip, under the user's lock: this node's row (DO NOTHING takes no row lock on an
# existing row, so connects never queue on it), the socket's row, and whether the user was
# live before it (the statement's snapshot does not see the row it adds).
_ADD_SOCKET = text(
    f"""
    WITH node AS (
        INSERT INTO realtime_nodes (node_id, expires_at)
        VALUES (:node_id, clock_timestamp() + make_interval(secs => CAST(:stale AS float8)))
        ON CONFLICT (node_id) DO NOTHING
    ),
    added AS (
        INSERT INTO presence_sockets (sid, user_id, family_id, node_id)
        VALUES (:sid, :user_id, :family_id, :node_id)
        ON CONFLICT (sid) DO NOTHING
        RETURNING sid
    )
    SELECT EXISTS (SELECT 1 FROM added) AS added,
           EXISTS ({_LIVE_SOCKET_OF_USER}) AS was_live
    """
)

# One round trip, under the user's lock: the socket's row, and whether the user is still
# live without it (the statement's snapshot still sees the row it deletes).
_REMOVE_SOCKET = text(
    f"""
    WITH removed AS (
        DELETE FROM presence_sockets WHERE sid = :sid AND node_id = :node_id RETURNING sid
    )
    SELECT EXISTS (SELECT 1 FROM removed) AS removed,
           EXISTS ({_LIVE_SOCKET_OF_USER} AND s.sid <> :sid) AS still_live
    """
)

_SET_VISIBLE = text(
    "UPDATE presence_sockets SET visible = :visible WHERE sid = :sid AND node_id = :node_id"
)

_NODE_WAS_LIVE = text(
    """
    SELECT expires_at > clock_timestamp() FROM realtime_nodes
    WHERE node_id = :node_id FOR UPDATE
    """
)

_HEARTBEAT = text(
    """
    INSERT INTO realtime_nodes (node_id, heartbeat_at, expires_at)
    VALUES (:node_id, clock_timestamp(),
            clock_timestamp() + make_interval(secs => CAST(:stale AS float8)))
    ON CONFLICT (node_id) DO UPDATE
    SET heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
    """
)

_STALE_NODES = text(
    """
    SELECT node_id FROM realtime_nodes
    WHERE expires_at < clock_timestamp() AND node_id <> :node_id
    ORDER BY node_id
    """
)

_STALE_NODE_USERS = text(
    """
    SELECT DISTINCT user_id, family_id FROM presence_sockets
    WHERE node_id = :node_id ORDER BY user_id
    """
)

# The expiry is checked again here, under the user's lock: a node that came back to life in
# the meantime keeps its sockets.
_REAP_USER_SOCKETS = text(
    """
    DELETE FROM presence_sockets s USING realtime_nodes n
    WHERE n.node_id = :node_id AND s.node_id = n.node_id AND s.user_id = :user_id
      AND n.expires_at < clock_timestamp()
    RETURNING s.sid
    """
)

# Only an empty node row goes: the cascade must never remove a socket nobody announced.
_DROP_NODE = text(
    """
    DELETE FROM realtime_nodes n
    WHERE n.node_id = :node_id AND n.expires_at < clock_timestamp()
      AND NOT EXISTS (SELECT 1 FROM presence_sockets s WHERE s.node_id = n.node_id)
    """
)


def family_room(family_id: uuid.UUID | str) -> str:
    """The room of a family's sockets: ``presence.changed`` goes there (not a stream: nothing in
    it is numbered or caught up)."""
    return f"family:{family_id}"


def new_node_id() -> str:
    """An id unique to this process start."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Presence:
    """This web process's side of presence: its sockets, its heartbeat, the reaping of others."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        node_id: str | None = None,
    ) -> None:
        self._sio = sio
        self._sessionmaker = sessionmaker
        self._heartbeat_seconds = settings.presence_heartbeat_seconds
        self._stale_seconds = settings.presence_stale_seconds
        self.node_id = node_id or new_node_id()
        # The truth for this node's own sockets: what a heartbeat restores if this node's rows
        # were reaped while it was stalled.
        self._sockets: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
        # Closed sockets whose rows could not be removed (the database or the pool failed the
        # disconnect handler): each heartbeat tries again, or their users would show as online
        # for as long as this node lives.
        self._unremoved: dict[str, tuple[uuid.UUID, uuid.UUID]] = {}
        self._heartbeat: asyncio.Future[None] | None = None
        self._beaten = False

    async def connected(self, sid: str, *, user_id: uuid.UUID, family_id: uuid.UUID) -> None:
        """Record a new socket; announce the user online if it is their first live one."""
        self._sockets[sid] = (user_id, family_id)
        if self._heartbeat is None:
            self._heartbeat = self._sio.start_background_task(self._heartbeat_loop)
        try:
            await self._add_socket(sid, user_id, family_id)
        except Exception:
            # Presence is best effort: it must never refuse or break a connection.
            logger.exception("recording a socket's presence failed", extra={"sid": sid})

    async def disconnected(self, sid: str) -> None:
        """Forget a socket; announce the user offline if it was their last live one."""
        # Popped before taking the user's lock: a concurrent restore re-checks the map under it.
        known = self._sockets.pop(sid, None)
        if known is None:
            return
        try:
            await self._remove_socket(sid, *known)
        except Exception:
            self._unremoved[sid] = known
            logger.exception(
                "removing a socket's presence failed; the next heartbeat tries again",
                extra={"sid": sid},
            )

    async def snapshot(self, family_id: uuid.UUID) -> PresenceSnapshot:
        """Who in the family has a live socket now, on any web process."""
        async with statement_session(self._sessionmaker) as session:
            online = list(await session.scalars(_FAMILY_ONLINE, {"family_id": family_id}))
        return PresenceSnapshot(online=online)

    async def set_visible(self, sid: str, visible: bool) -> None:
        """Record whether the socket's app is in front of its user (`app.visibility`)."""
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                _SET_VISIBLE, {"sid": sid, "node_id": self.node_id, "visible": visible}
            )

    async def _add_socket(self, sid: str, user_id: uuid.UUID, family_id: uuid.UUID) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_LOCK_USER, {"user_id": user_id})
            if sid not in self._sockets:
                return  # disconnected while waiting for the lock
            params = {"sid": sid, "user_id": user_id, "family_id": family_id}
            added, was_live = (
                await session.execute(
                    _ADD_SOCKET, params | {"node_id": self.node_id, "stale": self._stale_seconds}
                )
            ).one()
            if added and not was_live:
                # The socket itself needs no news of its own arrival.
                await self._announce(user_id, family_id, online=True, skip_sid=sid)

    async def _remove_socket(self, sid: str, user_id: uuid.UUID, family_id: uuid.UUID) -> None:
        async with self._sessionmaker() as session, session.begin():
            await session.execute(_LOCK_USER, {"user_id": user_id})
            params = {"sid": sid, "node_id": self.node_id, "user_id": user_id}
            removed, still_live = (await session.execute(_REMOVE_SOCKET, params)).one()
            if removed and not still_live:
                await self._announce(user_id, family_id, online=False)

    async def _is_live(self, session: AsyncSession, user_id: uuid.UUID) -> bool:
        return bool(await session.scalar(_USER_IS_LIVE, {"user_id": user_id}))

    async def _announce(
        self, user_id: uuid.UUID, family_id: uuid.UUID, *, online: bool, skip_sid: str | None = None
    ) -> None:
        # Called while the user's lock is held, so announcements of one user leave in the
        # order their decisions were made, whichever process made them.
        data = PresenceChanged(user_id=user_id, online=online).model_dump(
            mode="json", by_alias=True
        )
        try:
            await self._sio.emit(
                "presence.changed", data, room=family_room(family_id), skip_sid=skip_sid
            )
        except Exception:
            # An ephemeral signal may be lost; the presence rows must still be written.
            logger.warning(
                "presence.changed emit failed",
                exc_info=True,
                extra={"user_id": str(user_id), "online": online},
            )
        logger.debug("presence changed", extra={"user_id": str(user_id), "online": online})

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.beat()
                await self.reap_stale_nodes()
            except Exception:
                # A database outage must not end the loop; the next beat tries again.
                logger.warning("presence heartbeat failed", exc_info=True)
            await asyncio.sleep(self._heartbeat_seconds)

    async def beat(self) -> None:
        """Push this node's expiry forward; re-record its sockets if it had been reaped, and
        remove those of its closed sockets whose removal failed."""
        async with self._sessionmaker() as session, session.begin():
            was_live = await session.scalar(_NODE_WAS_LIVE, {"node_id": self.node_id})
            await session.execute(
                _HEARTBEAT, {"node_id": self.node_id, "stale": self._stale_seconds}
            )
        first_beat, self._beaten = not self._beaten, True
        # Before the first beat the row may not exist yet; that is a start, not a reaping.
        if not was_live and not first_beat and self._sockets:
            logger.warning(
                "presence node had expired; restoring its sockets",
                extra={"node_id": self.node_id, "sockets": len(self._sockets)},
            )
            for sid, (user_id, family_id) in list(self._sockets.items()):
                await self._add_socket(sid, user_id, family_id)
        for sid, (user_id, family_id) in list(self._unremoved.items()):
            await self._remove_socket(sid, user_id, family_id)
            del self._unremoved[sid]

    async def reap_stale_nodes(self) -> None:
        """Remove the sockets of nodes whose heartbeat expired, announcing who went offline."""
        async with self._sessionmaker() as session:
            stale = list(await session.scalars(_STALE_NODES, {"node_id": self.node_id}))
        for node_id in stale:
            async with self._sessionmaker() as session:
                users = (await session.execute(_STALE_NODE_USERS, {"node_id": node_id})).all()
            for user_id, family_id in users:
                async with self._sessionmaker() as session, session.begin():
                    await session.execute(_LOCK_USER, {"user_id": user_id})
                    reaped = list(
                        await session.scalars(
                            _REAP_USER_SOCKETS, {"node_id": node_id, "user_id": user_id}
                        )
                    )
                    if reaped and not await self._is_live(session, user_id):
                        await self._announce(user_id, family_id, online=False)
            async with self._sessionmaker() as session, session.begin():
                await session.execute(_DROP_NODE, {"node_id": node_id})
            logger.info(
                "reaped a stale presence node",
                extra={"stale_node_id": node_id, "users": len(users)},
            )
