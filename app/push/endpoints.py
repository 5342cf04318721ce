"""Which push-service endpoints the server will POST to: https, on the allowlist, nothing else.

Checked when a browser subscribes (``app.push.service``) and again by the push sender right
before each request (``dispatcher.push_sender``), so a host taken off the allowlist gets nothing.

The check reads the URL with ``urllib.parse``; the sender's HTTP client (yarl) reads it again.
So that both see the same host, an endpoint must be in a form no parser reads two ways: printable
ASCII of RFC 3986 only (no spaces, control characters or backslashes, which some parsers drop or
treat as ``/``), no ``@`` before the host, no fragment, and a host that is either a DNS name
(letters, digits and hyphens between dots) or an IP address written the standard way. An IP
address is allowed only when the allowlist names it exactly, never through a ``*.`` pattern.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from app.errors import AppError

# RFC 3986's characters (unreserved, reserved and %): printable ASCII without space, ", <, >,
# \, ^, `, {, | and }.
URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# WHATWG URL parsers read a host whose last label is a number (``127.1``, ``2130706433``,
# ``0x7f.0.0.1``) as an IPv4 address: such a host must be a dotted quad, or it is refused.
NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


class EndpointNotAllowed(AppError):
    status_code = 422
    code = "endpoint_not_allowed"


def host_allowed(host: str, allowlist: Sequence[str]) -> bool:
    """Whether ``host`` is on the allowlist (an entry ``*.example.com`` matches subdomains)."""
    host = host.lower().rstrip(".")
    for pattern in allowlist:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def address_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, allowlist: Sequence[str]
) -> bool:
    """Whether the allowlist names this IP address itself (patterns never match an address)."""
    return any(_address(entry) == address for entry in allowlist if not entry.startswith("*."))


def check_endpoint(endpoint: str, allowlist: Sequence[str]) -> None:
    """Refuse anything but an https URL of an allowed push service (the server will POST there)."""
    if not URL_CHARACTERS.fullmatch(endpoint):
        raise EndpointNotAllowed(
            "the endpoint must be a URL of printable ASCII: no spaces, control characters,"
            " backslashes or other characters outside RFC 3986"
        )
    try:
        url = urlsplit(endpoint)
        port = url.port
    except ValueError as exc:
        raise EndpointNotAllowed("the endpoint is not a valid URL") from exc
    if url.scheme != "https":
        raise EndpointNotAllowed(
            "push endpoints must use https", details={"scheme": url.scheme or None}
        )
    if not url.hostname or "@" in url.netloc:
        raise EndpointNotAllowed("the endpoint must name a host and carry no credentials")
    if "#" in endpoint:
        raise EndpointNotAllowed("the endpoint must not have a fragment")
    if port is not None and not 1 <= port <= 65535:
        raise EndpointNotAllowed("the endpoint's port must be between 1 and 65535")
    host = url.hostname  # lower case, without the brackets of an IPv6 address
    address = _address(host)
    if address is not None:
        if not address_allowed(address, allowlist):
            raise EndpointNotAllowed(
                "the endpoint's IP address is not on the allowlist (push services have names)",
                details={"host": host},
            )
        return
    name = host.removesuffix(".")
    labels = name.split(".")
    if (
        len(name) > 253
        or not all(DNS_LABEL.fullmatch(label) for label in labels)
        or NUMERIC_LABEL.fullmatch(labels[-1])
    ):
        raise EndpointNotAllowed(
            "the endpoint's host is neither a DNS name nor an IP address", details={"host": host}
        )
    if not host_allowed(name, allowlist):
        raise EndpointNotAllowed(
            "the endpoint is not on a known push service", details={"host": host}
        )
