"""VAPID (RFC 8292): the JWTs that identify this server to push services.

The key pair itself (its forms, checks and the development pair) is app.vapid_keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    """Signs the ``Authorization: vapid t=…, k=…`` header of each push request.

    One token per push service (origin) serves every push to it until half its lifetime is
    gone: an ECDSA signature per push was a fifth of a push's CPU in the dispatcher.
    """

    def __init__(
        self, private_key: str, subject: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._vapid: Any = Vapid(load_private_key(private_key))
        self.subject = subject
        self.public_key = public_key_of(private_key)
        self._clock = clock
        self._signed: dict[str, tuple[float, dict[str, str]]] = {}  # audience: (renew at, headers)

    def headers_for(self, endpoint: str) -> dict[str, str]:
        """The headers for this endpoint's origin (a copy: the caller adds its own)."""
        aud = audience(endpoint)
        now = self._clock()
        renew_at, headers = self._signed.get(aud, (now, {}))
        if now >= renew_at:
            claims = {"aud": aud, "exp": int(now) + TOKEN_LIFETIME_SECONDS, "sub": self.subject}
            headers = self._vapid.sign(claims)
            self._signed[aud] = (now + TOKEN_LIFETIME_SECONDS / 2, headers)
        return dict(headers)
