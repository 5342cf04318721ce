"""Wire shapes of families and members."""

from __future__ import annotations

import uuid

from pydantic import EmailStr, Field

from app.families.models import Role
from app.schemas import CamelModel


class MemberOut(CamelModel):
    id: uuid.UUID
    family_id: uuid.UUID
    email: str
    display_name: str
    role: Role


class MemberIn(CamelModel):
    display_name: str = Field(min_length=1, max_length=100)
    email: EmailStr
    password: str = Field(min_length=8, max_length=200)
    role: Role
