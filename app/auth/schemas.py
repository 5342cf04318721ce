"""Wire shapes of sign-up and log-in."""

from __future__ import annotations

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


class TokenOut(CamelModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: MemberOut
