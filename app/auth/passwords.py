"""Password hashing with Argon2id, a deliberately slow KDF, kept off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Each hash takes 64 MiB and a core for a while: a burst of them must queue, not starve the
# event loop's other requests of CPU and memory.
MAX_CONCURRENT_HASHES = 2
_hashing = asyncio.Semaphore(MAX_CONCURRENT_HASHES)


async def hash_password(password: str) -> str:
    async with _hashing:
        return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    async with _hashing:
        return await asyncio.to_thread(_verify, password_hash, password)


# Verifying against this when the e-mail is unknown keeps login timing uniform.
DUMMY_HASH = _hasher.hash("not-a-real-password")
