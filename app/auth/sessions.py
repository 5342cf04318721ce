"""Sessions: started at log-in, kept alive by rotating refresh tokens, ended by revocation.

A session is one row. Its access tokens name it (``sid``) and are refused once it has ended;
its refresh token carries the session's current generation. Using the refresh token rotates
it (generation + 1, in one conditional UPDATE, so two concurrent uses cannot both win); a token
of an older generation coming back means a copy exists somewhere, and the whole session ends.
Ending sessions stages `session.revoked` to the user's stream in the same transaction: the web
processes close the sockets of the listed sessions when it reaches them (app/realtime).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import events as auth_events
from app.auth.models import AuthSession
from app.auth.tokens import TokenClaims, issue_refresh_token, issue_token, verify_refresh_token
from app.errors import Unauthorized
from app.families.models import User
from app.settings import Settings


class SessionRevoked(Unauthorized):
    code = "session_revoked"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"


@dataclass(frozen=True, slots=True)
class SessionTokens:
    user: User
    session_id: uuid.UUID
    access_token: str
    refresh_token: str


def _tokens(user: User, row: AuthSession, settings: Settings) -> SessionTokens:
    return SessionTokens(
        user=user,
        session_id=row.id,
        access_token=issue_token(user, row.id, settings),
        refresh_token=issue_refresh_token(
            user.id, row.id, row.refresh_generation, row.expires_at, settings
        ),
    )


def _refresh_expiry(settings: Settings) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=settings.refresh_ttl_seconds)


async def start_session(session: AsyncSession, user: User, settings: Settings) -> SessionTokens:
    """A new session for ``user`` (a log-in or sign-up), with its first tokens."""
    row = AuthSession(
        id=uuid.uuid4(), user_id=user.id, refresh_generation=0, expires_at=_refresh_expiry(settings)
    )
    session.add(row)
    await session.flush()
    return _tokens(user, row, settings)


# Every authenticated request runs it: built once, not per request (building it and its cache
# key cost more Python than running it, docs/profiles.md).
_SESSION_USER = (
    select(User, AuthSession.revoked_at)
    .join(AuthSession, AuthSession.user_id == User.id)
    .where(User.id == bindparam("user_id"), AuthSession.id == bindparam("session_id"))
)


async def session_user(session: AsyncSession, claims: TokenClaims) -> User:
    """The user of a verified access token, if the user and the token's session still stand."""
    params = {"user_id": claims.user_id, "session_id": claims.session_id}
    found = (await session.execute(_SESSION_USER, params)).one_or_none()
    if found is None:
        raise Unauthorized("the token's user or session no longer exists")
    user, revoked_at = found
    if revoked_at is not None:
        raise SessionRevoked("this session has ended; log in again")
    if user.family_id != claims.family_id:
        raise Unauthorized("the token's user is no longer in that family")
    return user


async def refresh_session(
    sessionmaker: async_sessionmaker[AsyncSession], token: str, settings: Settings
) -> SessionTokens:
    """Rotate a session's refresh token: new access and refresh tokens for the same session.

    Owns its transactions: the revocation that a reused token causes must commit although the
    request then fails.
    """
    claims = verify_refresh_token(token, settings)
    async with sessionmaker() as session, session.begin():
        row = await session.scalar(
            update(AuthSession)
            .where(
                AuthSession.id == claims.session_id,
                AuthSession.user_id == claims.user_id,
                AuthSession.refresh_generation == claims.generation,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > datetime.now(UTC),
            )
            .values(
                refresh_generation=AuthSession.refresh_generation + 1,
                refreshed_at=datetime.now(UTC),
                expires_at=_refresh_expiry(settings),
            )
            .returning(AuthSession)
        )
        if row is not None:
            user = await session.get_one(User, row.user_id)
            return _tokens(user, row, settings)
        current = await session.get(AuthSession, claims.session_id)
        reused = (
            current is not None
            and current.revoked_at is None
            and current.user_id == claims.user_id
            and claims.generation < current.refresh_generation
        )
        if reused:
            user = await session.get_one(User, claims.user_id)
            await revoke_sessions(
                session, user, reason="refresh_token_reused", only=[claims.session_id]
            )
    if reused:
        raise RefreshTokenReused("this refresh token was already used; the session has ended")
    if current is not None and current.revoked_at is not None:
        raise SessionRevoked("this session has ended; log in again")
    raise Unauthorized("the refresh token is not valid for any session")


async def revoke_sessions(
    session: AsyncSession,
    user: User,
    *,
    reason: auth_events.RevokeReason,
    only: list[uuid.UUID] | None = None,
    keep: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """End the user's sessions that still stand (``only`` those, or all but ``keep``)."""
    statement = (
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC), revoked_reason=reason)
        .returning(AuthSession.id)
    )
    if only is not None:
        statement = statement.where(AuthSession.id.in_(only))
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    ended = sorted((await session.scalars(statement)).all())
    if ended:
        auth_events.record_revoked(
            session=session,
            user_id=user.id,
            family_id=user.family_id,
            session_ids=ended,
            reason=reason,
        )
    return ended
