"""The request's authenticated user and session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.sessions import session_user
from app.auth.tokens import TokenClaims, verify_token
from app.db import DbSession
from app.errors import Unauthorized
from app.families.models import User

_bearer = HTTPBearer(auto_error=False)


async def token_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenClaims:
    """The claims of a validly signed bearer token; 401 otherwise. Not yet its session's check."""
    if credentials is None:
        raise Unauthorized("a bearer token is required")
    return verify_token(credentials.credentials, request.app.state.settings)


CurrentClaims = Annotated[TokenClaims, Depends(token_claims)]


async def current_user(session: DbSession, claims: CurrentClaims) -> User:
    """The user named by a valid bearer token whose session still stands; 401 otherwise."""
    return await session_user(session, claims)


CurrentUser = Annotated[User, Depends(current_user)]
