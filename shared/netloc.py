"""Which URLs are this machine, and which host a request was meant for: parsed, never
compared as text (`http://127.0.0.1.nip.io` and `http://localhost.evil.example` begin
like loopback URLs and are anyone's)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
LOOPBACK_V6 = ipaddress.ip_address("::1")


def is_loopback(url: str) -> bool:
    """The URL names this machine: the name `localhost` exactly (any case, no trailing
    dot), an IPv4 address in 127.0.0.0/8 written out in full, or [::1]. Not an IPv4-mapped
    [::ffff:127.0.0.1], a zone, a short or decimal form (127.1, 2130706433), nor anything
    with user information, whose host is after the `@`."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or "@" in parts.netloc:
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.version == 4:
        return address in LOOPBACK_V4 and str(address) == host
    return address == LOOPBACK_V6


def authority(url: str) -> str:
    """`host:port` of a URL, lower-case, with the scheme's default port filled in: what a
    request's Host header is compared with."""
    parts = urlsplit(url)
    return host_port(parts.netloc, parts.scheme)


def origin(url: str) -> str:
    """The URL's origin as a browser writes it in `Origin`: lower-case, no default port."""
    parts = urlsplit(url)
    name = authority(url)
    default = f":{DEFAULT_PORTS.get(parts.scheme, 80)}"
    return f"{parts.scheme.lower()}://{name[:-len(default)] if name.endswith(default) else name}"


def host_port(host: str, scheme: str = "http") -> str:
    """A Host header (or URL authority) as `host:port`, lower-case, the scheme's default
    port filled in; "" for one that cannot be a host (user information, a bad port)."""
    host = host.strip().lower()
    if not host or "@" in host or any(c in host for c in "/\\?# \t"):
        return ""
    try:
        parts = urlsplit(f"//{host}")
        port = parts.port or DEFAULT_PORTS.get(scheme, 80)
    except ValueError:
        return ""
    name = parts.hostname or ""
    if not name:
        return ""
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"
