"""REST endpoints for sign-up, log-in, sessions and the current user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from app.auth import service as auth_service
from app.auth import sessions
from app.auth.dependencies import CurrentClaims, CurrentUser
from app.auth.schemas import LoginIn, PasswordChangeIn, RefreshIn, SignupIn, TokenOut
from app.auth.throttle import LoginThrottle
from app.db import DbSession
from app.errors import ErrorBody
from app.families.schemas import MemberOut
from app.settings import Settings

router = APIRouter(tags=["auth"])

_THROTTLED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "Too many attempts from this address; see Retry-After"}
}


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _throttle(settings: Settings) -> LoginThrottle:
    return LoginThrottle(
        window_seconds=settings.login_window_seconds,
        per_address=settings.login_attempts_per_address,
        per_account=settings.login_attempts_per_account,
    )


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _token_response(tokens: sessions.SessionTokens, settings: Settings) -> TokenOut:
    return TokenOut(
        access_token=tokens.access_token,
        expires_in=settings.jwt_ttl_seconds,
        refresh_token=tokens.refresh_token,
        refresh_expires_in=settings.refresh_ttl_seconds,
        session_id=tokens.session_id,
        user=MemberOut.model_validate(tokens.user),
    )


@router.post(
    "/auth/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenOut,
    responses={
        409: {"model": ErrorBody, "description": "Sign-up failed (the e-mail is taken)"},
        **_THROTTLED,
    },
)
async def signup(body: SignupIn, request: Request, session: DbSession) -> TokenOut:
    """Create a family with its first parent, and log that parent in."""
    settings = _settings(request)
    user = await auth_service.signup(
        session=session,
        sessionmaker=request.app.state.sessionmaker,
        throttle=_throttle(settings),
        address=_address(request),
        family_name=body.family_name,
        display_name=body.display_name,
        email=body.email,
        password=body.password,
    )
    return _token_response(await sessions.start_session(session, user, settings), settings)


@router.post("/auth/login", response_model=TokenOut, responses=_THROTTLED)
async def login(body: LoginIn, request: Request) -> TokenOut:
    """Exchange e-mail and password for a new session's tokens."""
    settings = _settings(request)
    user = await auth_service.authenticate(
        sessionmaker=request.app.state.sessionmaker,
        throttle=_throttle(settings),
        email=body.email,
        password=body.password,
        address=_address(request),
    )
    async with request.app.state.sessionmaker() as session, session.begin():
        tokens = await sessions.start_session(session, user, settings)
    return _token_response(tokens, settings)


@router.post("/auth/refresh", response_model=TokenOut)
async def refresh(body: RefreshIn, request: Request) -> TokenOut:
    """Exchange the session's refresh token for new tokens (the old refresh token is spent).

    A spent refresh token that comes back ends the session (`refresh_token_reused`).
    """
    settings = _settings(request)
    tokens = await sessions.refresh_session(
        request.app.state.sessionmaker, body.refresh_token, settings
    )
    return _token_response(tokens, settings)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(user: CurrentUser, claims: CurrentClaims, session: DbSession) -> None:
    """End this session: its tokens are refused and its sockets closed."""
    await sessions.revoke_sessions(session, user, reason="logout", only=[claims.session_id])


@router.post("/auth/logout-everywhere", status_code=status.HTTP_204_NO_CONTENT)
async def logout_everywhere(user: CurrentUser, session: DbSession) -> None:
    """End every session of the current user, on every device."""
    await sessions.revoke_sessions(session, user, reason="logout_everywhere")


@router.post("/auth/password", status_code=status.HTTP_204_NO_CONTENT, responses=_THROTTLED)
async def change_password(body: PasswordChangeIn, request: Request, claims: CurrentClaims) -> None:
    """Change the password; every other session of the user ends (this one goes on)."""
    await auth_service.change_password(
        sessionmaker=request.app.state.sessionmaker,
        throttle=_throttle(_settings(request)),
        claims=claims,
        current_password=body.current_password,
        new_password=body.new_password,
        address=_address(request),
    )


@router.get("/me", response_model=MemberOut)
async def me(user: CurrentUser) -> MemberOut:
    """The authenticated user."""
    return MemberOut.model_validate(user)
