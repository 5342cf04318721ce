"""A push service on loopback for the tests and benchmarks, playing FCM/Mozilla autopush over HTTPS.

It checks what a real push service checks: the VAPID ``Authorization`` header (an ES256 JWT
signed by the configured key, ``aud`` = this origin, ``exp`` in the future and at most 24 h
ahead, a ``mailto:``/``https:`` ``sub``), a ``TTL`` header, a well-formed ``Urgency`` and
``Topic``, the ``aes128gcm`` encoding and the 4 KB size limit. It decrypts each message with the
browser's private key and auth secret (``http_ece``), records it, and answers with whatever
sequence a test scripts per browser: a status, a status with headers, ``Slow`` (a status after a
delay) or ``HANG`` (no answer until the service closes: past any client timeout).

TLS: a throwaway CA and a certificate for 127.0.0.1 are made per service; the dispatcher trusts
the CA through ``DISPATCHER_PUSH_CA_FILE`` (a setting meant for exactly this).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import re
import ssl
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_ece
import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.vapid_keys import b64url_decode, b64url_encode, load_public_key, public_key_bytes

HANG = "hang"
URGENCIES = {"very-low", "low", "normal", "high"}
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
VAPID_HEADER = re.compile(r"^vapid\s+(?P<params>.+)$", re.IGNORECASE)
MAX_BODY_BYTES = 4096


@dataclass(frozen=True)
class Slow:
    """An answer that takes this long to come (a busy push service)."""

    seconds: float
    status: int = 201


Answer = int | tuple[int, dict[str, str]] | str | Slow


@dataclass
class Browser:
    """A browser's side of a subscription: fresh P-256 keys and a 16-byte auth secret."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the page."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {
                "p256dh": b64url_encode(public_key_bytes(self.private_key.public_key())),
                "auth": b64url_encode(self.auth_secret),
            },
        }


@dataclass(frozen=True)
class ReceivedPush:
    """A push that passed every check, with its decrypted message and the answer it got."""

    token: str
    at: float  # time.monotonic()
    headers: dict[str, str]  # names in lower case
    message: dict[str, Any]
    answer: str


def lowercase_keys(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def make_certificates(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA (its PEM file returned) and a server context for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test push service CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "push-ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "push-server.pem"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "push-server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context


class PushService:
    """The push service double; ``await start()``, then hand out ``new_browser()`` endpoints."""

    def __init__(
        self, vapid_public_key: str, directory: Path, *, latency_seconds: float = 0.0
    ) -> None:
        self.vapid_public_key = load_public_key(vapid_public_key)
        # Every answer comes this much later, as from a push service across the internet.
        self.latency_seconds = latency_seconds
        self._vapid_public_raw = b64url_decode(vapid_public_key)
        self.ca_file, self._ssl = make_certificates(directory)
        self.origin = ""
        self.received: list[ReceivedPush] = []
        self.refused: list[tuple[str, int, str]] = []
        self.hanging = 0
        self._browsers: dict[str, Browser] = {}
        self._scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self._release = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{token}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        _, port = self._runner.addresses[0][:2]
        self.origin = f"https://127.0.0.1:{port}"

    async def close(self) -> None:
        self._release.set()  # hung requests answer now, so the server can shut down
        if self._runner is not None:
            await self._runner.cleanup()

    def new_browser(self) -> Browser:
        token = uuid.uuid4().hex
        browser = Browser(token=token, endpoint=f"{self.origin}/push/{token}")
        self._browsers[token] = browser
        return browser

    def script(self, browser: Browser, *answers: Answer) -> None:
        """Answer the browser's next pushes with these, in order; 201 once they run out."""
        self._scripts[browser.token].extend(answers)

    def pushes(self, browser: Browser | None = None) -> list[ReceivedPush]:
        return [p for p in self.received if browser is None or p.token == browser.token]

    async def wait_until(self, condition: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        browser = self._browsers.get(token)
        body = await request.read()
        try:
            if browser is None:
                raise Refused(404, "no such subscription")
            self._check_vapid(request.headers.get("Authorization", ""))
            self._check_headers(request.headers)
            if len(body) > MAX_BODY_BYTES:
                raise Refused(413, "payload too large")
            plaintext = http_ece.decrypt(
                body,
                version="aes128gcm",
                private_key=browser.private_key,
                auth_secret=browser.auth_secret,
            )
            message = json.loads(plaintext)
        except Refused as refused:
            self.refused.append((token, refused.status, refused.reason))
            self._changed.set()
            return web.Response(status=refused.status, text=refused.reason)
        if self.latency_seconds:
            await asyncio.sleep(self.latency_seconds)
        script = self._scripts[token]
        answer = script.popleft() if script else 201
        self.received.append(
            ReceivedPush(
                token, time.monotonic(), lowercase_keys(request.headers), message, str(answer)
            )
        )
        self._changed.set()
        if answer == HANG:
            self.hanging += 1
            self._changed.set()
            try:
                await self._release.wait()
            finally:
                self.hanging -= 1
            return web.Response(status=201)
        if isinstance(answer, Slow):
            await asyncio.sleep(answer.seconds)
            return web.Response(status=answer.status)
        status, headers = answer if isinstance(answer, tuple) else (int(answer), {})
        return web.Response(status=status, headers=headers)

    def _check_vapid(self, authorization: str) -> None:
        match = VAPID_HEADER.match(authorization.strip())
        if match is None:
            raise Refused(401, "missing vapid authorization")
        params = dict(
            part.strip().split("=", 1) for part in match["params"].split(",") if "=" in part
        )
        token, key = params.get("t"), params.get("k")
        if not token or not key:
            raise Refused(401, "vapid authorization needs t and k")
        if b64url_decode(key) != self._vapid_public_raw:
            raise Refused(403, "k is not the application server key of the subscription")
        try:
            claims = jwt.decode(
                token,
                self.vapid_public_key,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise Refused(403, f"bad vapid token: {exc}") from exc
        if claims["exp"] > time.time() + 24 * 3600:
            raise Refused(403, "vapid token expires more than 24 hours ahead")
        if not re.match(r"^(mailto:.+@.+|https://.+)$", claims["sub"]):
            raise Refused(403, "vapid sub must be a mailto: or https: contact")

    def _check_headers(self, headers: Any) -> None:
        ttl = headers.get("TTL")
        if ttl is None or not ttl.isdigit():
            raise Refused(400, "TTL header required")
        urgency = headers.get("Urgency")
        if urgency is not None and urgency not in URGENCIES:
            raise Refused(400, "bad Urgency")
        topic = headers.get("Topic")
        if topic is not None and not TOPIC.match(topic):
            raise Refused(400, "bad Topic")
        if headers.get("Content-Encoding") != "aes128gcm":
            raise Refused(415, "only aes128gcm")
