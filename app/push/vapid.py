"""VAPID (RFC 8292): the key pair that identifies this server to push services, and its JWTs.

Keys travel as base64url without padding, the form browsers and ``web-push`` tools use: the
private key is the raw 32-byte scalar, the public key the 65-byte uncompressed P-256 point
(what the browser passes to ``pushManager.subscribe`` as ``applicationServerKey``).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid

# Refused outside development (like the JWT placeholder): anyone can read it here.
DEVELOPMENT_PRIVATE_KEY = "RCPuvYHkYYmWTz19pRc-SZ--hXDecT0Sy5F2EycI07s"
DEVELOPMENT_PUBLIC_KEY = (
    "BDb_5M6j4dedl1tnp-ajn8nAxF_3f7fznPVdoXKek-zZl6retCZD3ZIL-_yoc68aYBGyd1UWCeZB7Lw4BboKRK4"
)
# RFC 8292 caps a VAPID JWT's lifetime at 24 hours; stay well inside it.
TOKEN_LIFETIME_SECONDS = 12 * 3600
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding; ``ValueError`` if it is not base64url."""
    text = value.strip()
    if not text or any(c not in _B64URL for c in text.rstrip("=")):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """A base64url uncompressed P-256 point; ``ValueError`` if it is not one."""
    raw = b64url_decode(value)
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("not an uncompressed P-256 point (65 bytes starting with 0x04)")
    # Raises ValueError for a point that is not on the curve.
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


def load_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """A base64url raw 32-byte P-256 private scalar; ``ValueError`` if it is not one."""
    raw = b64url_decode(value)
    if len(raw) != 32:
        raise ValueError("not a raw 32-byte P-256 private key")
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


def public_key_of(private_key: str) -> str:
    """The base64url public key belonging to a base64url private key."""
    return b64url_encode(public_key_bytes(load_private_key(private_key).public_key()))


def generate_key_pair() -> tuple[str, str]:
    """A fresh (private, public) VAPID key pair, base64url."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    return b64url_encode(private), b64url_encode(public_key_bytes(key.public_key()))


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
