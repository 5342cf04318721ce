"""The request's authenticated user."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.tokens import verify_token
from app.db import DbSession
from app.errors import Unauthorized
from app.families.models import User

_bearer = HTTPBearer(auto_error=False)


async def current_user(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user named by a valid bearer token; 401 otherwise."""
    if credentials is None:
        raise Unauthorized("a bearer token is required")
    claims = verify_token(credentials.credentials, request.app.state.settings)
    user = await session.get(User, claims.user_id)
    if user is None:
        raise Unauthorized("the token's user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
