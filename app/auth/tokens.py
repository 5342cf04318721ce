"""Access tokens: HS256 JWTs whose claims are all checked, for REST and Socket.IO alike."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    expires_at: datetime


class TokenExpired(Unauthorized):
    code = "token_expired"


def issue_token(user: User, settings: Settings, *, now: datetime | None = None) -> str:
    """A signed access token for ``user``."""
    issued_at = now or datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "fam": str(user.family_id),
        "role": user.role,
        "aud": settings.jwt_audience,
        "iss": settings.jwt_issuer,
        "iat": issued_at,
        "exp": issued_at + timedelta(seconds=settings.jwt_ttl_seconds),
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm=ALGORITHM)


def verify_token(token: str, settings: Settings) -> TokenClaims:
    """Decode ``token``; raise TokenExpired or Unauthorized when it cannot be trusted."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[ALGORITHM],  # pinned: never let the token choose
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            family_id=uuid.UUID(claims["fam"]),
            role=Role(claims["role"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("the access token has expired") from exc
    except (jwt.InvalidTokenError, KeyError, ValueError) as exc:
        raise Unauthorized("the access token is invalid") from exc
