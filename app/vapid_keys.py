"""VAPID key pairs (RFC 8292): their base64url forms, checks and the development pair.

The key pair identifies this server to push services: the settings check it when they are read
(app.settings), the push sender signs with it (app.push.vapid). Keys travel as base64url
without padding, the form browsers and ``web-push`` tools use: the private key is the raw
32-byte scalar, the public key the 65-byte uncompressed P-256 point (what the browser passes to
``pushManager.subscribe`` as ``applicationServerKey``).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# Refused outside development (like the JWT placeholder): anyone can read it here.
DEVELOPMENT_PRIVATE_KEY = "RCPuvYHkYYmWTz19pRc-SZ--hXDecT0Sy5F2EycI07s"
DEVELOPMENT_PUBLIC_KEY = (
    "BDb_5M6j4dedl1tnp-ajn8nAxF_3f7fznPVdoXKek-zZl6retCZD3ZIL-_yoc68aYBGyd1UWCeZB7Lw4BboKRK4"
)
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
