"""Sign-up, log-in and password change."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.passwords import DUMMY_HASH, hash_password, verify_password
from app.auth.sessions import revoke_sessions, session_user
from app.auth.throttle import LoginThrottle
from app.auth.tokens import TokenClaims
from app.errors import AlreadyExists, Forbidden, Unauthorized
from app.families import service as family_service
from app.families.models import Role, User


class WrongPassword(Forbidden):
    code = "wrong_password"


async def signup(
    *,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    throttle: LoginThrottle,
    address: str,
    family_name: str,
    display_name: str,
    email: str,
    password: str,
) -> User:
    """Create a family and its first parent.

    Without an e-mail channel, a taken address cannot be hidden here; so sign-ups count against
    the log-in throttle (in a transaction of their own, kept when this one fails), and every
    taken address gets the same answer.
    """
    async with sessionmaker() as attempt, attempt.begin():
        await throttle.take_slot(attempt, email=email, address=address)
    # Hashed before the first query, so the slow hash holds no pooled connection.
    password_hash = await hash_password(password)
    family = await family_service.create_family(session=session, name=family_name)
    try:
        user = await family_service.add_member(
            session=session,
            family_id=family.id,
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            role=Role.PARENT,
        )
    except AlreadyExists as exc:
        raise AlreadyExists("sign-up failed: if this is your address, log in instead") from exc
    await throttle.succeeded(session, email=email, address=address)
    return user


async def authenticate(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    throttle: LoginThrottle,
    email: str,
    password: str,
    address: str,
) -> User:
    """The user with these credentials; Unauthorized otherwise, without saying which was wrong.

    Owns its short transactions: the attempt is counted and the user read before the slow
    password check, which then runs holding no pooled connection (TooManyRequests when the
    address or the account from it is over its limit).
    """
    async with sessionmaker() as session, session.begin():
        await throttle.take_slot(session, email=email, address=address)
    async with sessionmaker() as session:
        user = await session.scalar(select(User).where(User.email == email.lower()))
    if user is None:
        await verify_password(DUMMY_HASH, password)
        raise Unauthorized("wrong e-mail or password")
    if not await verify_password(user.password_hash, password):
        raise Unauthorized("wrong e-mail or password")
    async with sessionmaker() as session, session.begin():
        await throttle.succeeded(session, email=email, address=address)
    return user


async def change_password(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    throttle: LoginThrottle,
    claims: TokenClaims,
    current_password: str,
    new_password: str,
    address: str,
) -> None:
    """Set a new password when the current one is right, and end the user's other sessions.

    A wrong current password is a guess like a failed log-in, and counts against the same
    throttle; as in ``authenticate``, the slow hashes run holding no pooled connection.
    """
    async with sessionmaker() as session, session.begin():
        user = await session_user(session, claims)
        await throttle.take_slot(session, email=user.email, address=address)
    if not await verify_password(user.password_hash, current_password):
        raise WrongPassword("the current password is wrong")
    new_hash = await hash_password(new_password)
    async with sessionmaker() as session, session.begin():
        user = await session_user(session, claims)
        user.password_hash = new_hash
        await revoke_sessions(session, user, reason="password_changed", keep=claims.session_id)
        await throttle.succeeded(session, email=user.email, address=address)
