"""Wire shapes of sign-up and log-in."""

from __future__ import annotations

import uuid

from pydantic import EmailStr, Field

from app.families.schemas import MemberOut
from app.schemas import CamelModel


class SignupIn(CamelModel):
    family_name: str = Field(min_length=1, max_length=100)
    display_name: str = Field(min_length=1, max_length=100)
    email: EmailStr
    password: str = Field(min_length=8, max_length=200)


class LoginIn(CamelModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=200)


class RefreshIn(CamelModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class PasswordChangeIn(CamelModel):
    current_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=8, max_length=200)


class TokenOut(CamelModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str = Field(
        description="Exchange at POST /v1/auth/refresh for new tokens; each is good for one use"
    )
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires")
    session_id: uuid.UUID = Field(
        description="This log-in's session, as `session.revoked` names it"
    )
    user: MemberOut
