"""The login throttle: attempts counted per client address and per (account, address).

Every login attempt takes a slot of both keys *before* the password is checked, so a burst of
concurrent guesses cannot all slip past the count; a successful login gives its slots back, so
only failures add up. Over a limit, the answer is 429 with Retry-After until the key's window
ends. Windows are fixed and short, and the account key includes the client's address, so an
attacker elsewhere never locks the real user out (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import TooManyRequests

_TAKE_SLOT = text(
    """
    INSERT INTO login_attempts AS a (key, window_started_at, attempts)
    VALUES (:key, now(), 1)
    ON CONFLICT (key) DO UPDATE SET
        window_started_at = CASE WHEN a.window_started_at <= now() - :window
                                 THEN now() ELSE a.window_started_at END,
        attempts = CASE WHEN a.window_started_at <= now() - :window
                        THEN 1 ELSE a.attempts + 1 END
    RETURNING attempts,
              extract(epoch FROM a.window_started_at + :window - now())::float8 AS retry_after
    """
)

_FORGET = text("DELETE FROM login_attempts WHERE key = :key")

_GIVE_BACK = text("UPDATE login_attempts SET attempts = greatest(attempts - 1, 0) WHERE key = :key")


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """Limits of failed logins per window, per client address and per account from it."""

    window_seconds: float
    per_address: int
    per_account: int

    def keys(self, *, email: str, address: str) -> dict[str, int]:
        return {f"ip:{address}": self.per_address, _account_key(email, address): self.per_account}

    async def take_slot(self, session: AsyncSession, *, email: str, address: str) -> None:
        """Count an attempt; TooManyRequests when a key is over its limit."""
        window = timedelta(seconds=self.window_seconds)
        wait = 0.0
        for key, limit in sorted(self.keys(email=email, address=address).items()):
            row = (await session.execute(_TAKE_SLOT, {"key": key, "window": window})).one()
            if row.attempts > limit:
                wait = max(wait, row.retry_after)
        if wait > 0:
            raise TooManyRequests("too many login attempts; try again later", retry_after=wait)

    async def succeeded(self, session: AsyncSession, *, email: str, address: str) -> None:
        """Only failures count: the account's attempts from this address are forgiven, and
        the address gets this attempt's slot back."""
        await session.execute(_FORGET, {"key": _account_key(email, address)})
        await session.execute(_GIVE_BACK, {"key": f"ip:{address}"})


def _account_key(email: str, address: str) -> str:
    return f"account:{email.lower()}@{address}"
