"""VAPID (RFC 8292): the JWTs that identify this server to push services.

The key pair itself (its forms, checks and the development pair) is app.vapid_keys.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from py_vapid import Vapid

from app.vapid_keys import load_private_key, public_key_of

# RFC 8292 caps a VAPID JWT's lifetime at 24 hours; stay well inside it.
TOKEN_LIFETIME_SECONDS = 12 * 3600


def audience(endpoint: str) -> str:
    """The ``aud`` claim for a push endpoint: its origin (scheme, host and any port)."""
    url = urlsplit(endpoint)
    return f"{url.scheme}://{url.netloc}"


class VapidSigner:
    """Signs the ``Authorization: vapid t=…, k=…`` header of each push request."""

    def __init__(self, private_key: str, subject: str) -> None:
        self._vapid: Any = Vapid(load_private_key(private_key))
        self.subject = subject
        self.public_key = public_key_of(private_key)

    def headers_for(self, endpoint: str) -> dict[str, str]:
        """A fresh claim set for this endpoint's origin, signed (never a shared, mutated dict)."""
        claims = {
            "aud": audience(endpoint),
            "exp": int(time.time()) + TOKEN_LIFETIME_SECONDS,
            "sub": self.subject,
        }
        headers: dict[str, str] = self._vapid.sign(claims)
        return headers
