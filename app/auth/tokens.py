"""Signed tokens: short-lived access tokens and the refresh tokens of a session.

Both are HS256 JWTs whose claims are all checked. An access token names its session (``sid``)
so that ending the session ends the token; a refresh token carries the session's refresh
generation, so a rotated one that comes back is recognised (app/auth/sessions.py). The two
have different audiences: neither is accepted in place of the other.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from app.errors import Unauthorized
from app.families.models import Role, User
from app.settings import Settings

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    family_id: uuid.UUID
    role: Role
    session_id: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RefreshClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    generation: int


class TokenExpired(Unauthorized):
    code = "token_expired"


def _refresh_audience(settings: Settings) -> str:
    return f"{settings.jwt_audience}:refresh"


def issue_token(
    user: User, session_id: uuid.UUID, settings: Settings, *, now: datetime | None = None
) -> str:
    """A signed access token for ``user`` in the session ``session_id``."""
    issued_at = now or datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "fam": str(user.family_id),
        "role": user.role,
        "sid": str(session_id),
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": issued_at,
        "exp": issued_at + timedelta(seconds=settings.jwt_ttl_seconds),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def issue_refresh_token(
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    generation: int,
    expires_at: datetime,
    settings: Settings,
) -> str:
    """The refresh token of generation ``generation`` of a session."""
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "gen": generation,
        "aud": _refresh_audience(settings),
        "iss": settings.jwt_issuer,
        "iat": datetime.now(UTC),
        "exp": expires_at,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def _decode(token: str, settings: Settings, *, audience: str, what: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],  # pinned: never let the token choose
            audience=audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "sid", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired(f"the {what} has expired") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"the {what} is invalid") from exc
    return claims


def verify_token(token: str, settings: Settings) -> TokenClaims:
    """Decode an access token; raise TokenExpired or Unauthorized when it cannot be trusted.

    Only the signature and claims: whether its session still stands is the database's to say
    (``app.auth.sessions.session_user``).
    """
    claims = _decode(token, settings, audience=settings.jwt_audience, what="access token")
    try:
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            family_id=uuid.UUID(claims["fam"]),
            role=Role(claims["role"]),
            session_id=uuid.UUID(claims["sid"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise Unauthorized("the access token is invalid") from exc


def verify_refresh_token(token: str, settings: Settings) -> RefreshClaims:
    """Decode a refresh token (signature and claims only, as ``verify_token``)."""
    claims = _decode(token, settings, audience=_refresh_audience(settings), what="refresh token")
    try:
        generation = claims["gen"]
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise TypeError("gen")
        return RefreshClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            generation=generation,
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise Unauthorized("the refresh token is invalid") from exc
