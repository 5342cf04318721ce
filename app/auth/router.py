"""REST endpoints for sign-up, log-in and the current user."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from app.auth import service as auth_service
from app.auth.dependencies import CurrentUser
from app.auth.schemas import LoginIn, SignupIn, TokenOut
from app.auth.throttle import LoginThrottle
from app.auth.tokens import issue_token
from app.db import DbSession
from app.families.models import User
from app.families.schemas import MemberOut
from app.settings import Settings

router = APIRouter(tags=["auth"])


def _token_response(user: User, settings: Settings) -> TokenOut:
    return TokenOut(
        access_token=issue_token(user, settings),
        expires_in=settings.jwt_ttl_seconds,
        user=MemberOut.model_validate(user),
    )


@router.post("/auth/signup", status_code=status.HTTP_201_CREATED, response_model=TokenOut)
async def signup(body: SignupIn, request: Request, session: DbSession) -> TokenOut:
    """Create a family with its first parent, and log that parent in."""
    user = await auth_service.signup(
        session=session,
        family_name=body.family_name,
        display_name=body.display_name,
        email=body.email,
        password=body.password,
    )
    return _token_response(user, request.app.state.settings)


@router.post(
    "/auth/login",
    response_model=TokenOut,
    responses={429: {"description": "Too many attempts from this address; see Retry-After"}},
)
async def login(body: LoginIn, request: Request) -> TokenOut:
    """Exchange e-mail and password for an access token."""
    settings: Settings = request.app.state.settings
    user = await auth_service.authenticate(
        sessionmaker=request.app.state.sessionmaker,
        throttle=LoginThrottle(
            window_seconds=settings.login_window_seconds,
            per_address=settings.login_attempts_per_address,
            per_account=settings.login_attempts_per_account,
        ),
        email=body.email,
        password=body.password,
        address=request.client.host if request.client else "unknown",
    )
    return _token_response(user, settings)


@router.get("/me", response_model=MemberOut)
async def me(user: CurrentUser) -> MemberOut:
    """The authenticated user."""
    return MemberOut.model_validate(user)
