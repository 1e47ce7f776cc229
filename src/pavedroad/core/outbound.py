"""Outbound HTTP reads under the platform's rules.

Every URL (the first and each redirect) must name an allowed host, and must not
resolve to a loopback, link-local or private address unless that is configured.
Bodies are read up to a size cap. Nothing else in the platform opens URLs itself.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from pavedroad.core.errors import InputError, PayloadTooLargeError

MAX_REDIRECTS = 5


class OutboundError(InputError):
    title = "Outbound request refused or failed"
    type_slug = "outbound-refused"


def host_allowed(url: str, allowed_hosts: list[str]) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    return any(
        fnmatch.fnmatchcase(host, p.lower()) or fnmatch.fnmatchcase(with_port, p.lower())
        for p in allowed_hosts
    )


def _check_address(url: str, allow_private_network: bool) -> None:
    host = urlsplit(url).hostname or ""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise OutboundError(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_link_local or address.is_multicast or address.is_unspecified:
            raise OutboundError(f"{host} resolves to {address}, a link-local or reserved address")
        if (address.is_loopback or address.is_private) and not allow_private_network:
            raise OutboundError(
                f"{host} resolves to {address}, a loopback or private address; set "
                "catalog.allow_private_network to allow it"
            )


def check_url(url: str, allowed_hosts: list[str], allow_private_network: bool) -> None:
    """Raise :class:`OutboundError` unless the platform may read this URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise OutboundError(f"only http and https URLs can be read, not {parts.scheme or 'none'!r}")
    if not host_allowed(url, allowed_hosts):
        raise OutboundError(
            f"host {parts.hostname!r} is not in the allowed hosts "
            f"(catalog.allowed_hosts: {', '.join(allowed_hosts) or 'none'})"
        )
    _check_address(url, allow_private_network)


def fetch(
    url: str,
    *,
    allowed_hosts: list[str],
    allow_private_network: bool = False,
    max_bytes: int = 1024 * 1024,
    timeout: float = 20.0,
) -> bytes:
    """GET a URL, following at most five redirects, each one checked again."""
    current = url
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(current, allowed_hosts, allow_private_network)
            try:
                with client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = urljoin(current, location)
                        continue
                    if response.status_code == 404:
                        raise OutboundError(f"{current} was not found (HTTP 404)", not_found=True)
                    if response.status_code >= 400:
                        raise OutboundError(f"{current} answered HTTP {response.status_code}")
                    return _read_capped(response, current, max_bytes)
            except httpx.HTTPError as exc:
                raise OutboundError(f"cannot read {current}: {exc}") from None
    raise OutboundError(f"{url} redirected more than {MAX_REDIRECTS} times")


def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLargeError(f"{url} is larger than the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
