"""Which push-service endpoints the server will POST to: https, on the allowlist, nothing else.

Checked when a browser subscribes (``app.push.service``) and again by the push sender right
before each request (``dispatcher.push_sender``), so a host taken off the allowlist gets nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from app.errors import AppError


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


def check_endpoint(endpoint: str, allowlist: Sequence[str]) -> None:
    """Refuse anything but an https URL of an allowed push service (the server will POST there)."""
    try:
        url = urlsplit(endpoint)
        url.port  # noqa: B018  (raises ValueError for a malformed port)
    except ValueError as exc:
        raise EndpointNotAllowed("the endpoint is not a valid URL") from exc
    if url.scheme != "https":
        raise EndpointNotAllowed(
            "push endpoints must use https", details={"scheme": url.scheme or None}
        )
    if not url.hostname or url.username is not None or url.password is not None:
        raise EndpointNotAllowed("the endpoint must name a host and carry no credentials")
    if not host_allowed(url.hostname, allowlist):
        raise EndpointNotAllowed(
            "the endpoint is not on a known push service", details={"host": url.hostname}
        )
