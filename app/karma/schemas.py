"""Wire shapes of karma: grants, balances and ledger history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from app.karma.models import KarmaSource
from app.schemas import CamelModel

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class KarmaGrantIn(CamelModel):
    """A parent's manual grant to a member of their family."""

    user_id: uuid.UUID
    amount: int = Field(ge=1, le=10_000)
    reason: Reason


class KarmaEntryOut(CamelModel):
    """One ledger entry: a signed change of a member's balance and the balance after it."""

    id: int
    user_id: uuid.UUID
    amount: int
    balance_after: int
    source: KarmaSource
    reason: str
    reference_id: uuid.UUID | None
    created_by: uuid.UUID | None
    created_at: datetime


class KarmaOut(CamelModel):
    """A member's balance and their ledger history, newest first."""

    user_id: uuid.UUID
    balance: int
    history: list[KarmaEntryOut]
