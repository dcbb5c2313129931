"""A pasted search value as an indicator (a stand-in until the correlation core's
normaliser lands: the core's `parse_indicator` replaces this one)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from shared.correlation.model import DOMAIN, IP, SHA1, SHA256, URL, Indicator

_HEX = re.compile(r"[0-9a-f]+")
_DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z0-9-]{2,63}")
MAX_VALUE = 2048


def parse_indicator(text: str) -> Indicator:
    """The indicator a pasted value is, or ValueError saying why it is none."""
    value = (text or "").strip()
    if not value:
        raise ValueError("it is empty")
    if len(value) > MAX_VALUE:
        raise ValueError(f"it is longer than {MAX_VALUE} characters")
    lower = value.lower()
    if _HEX.fullmatch(lower):
        if len(lower) == 64:
            return Indicator(SHA256, lower)
        if len(lower) == 40:
            return Indicator(SHA1, lower)
        raise ValueError("a hash must be 40 (SHA1) or 64 (SHA256) hexadecimal characters")
    try:
        return Indicator(IP, str(ipaddress.ip_address(value)))
    except ValueError:
        pass
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https", "ftp") or not parts.hostname:
            raise ValueError("a URL must be http, https or ftp with a host name")
        host = parts.hostname.rstrip(".")
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return Indicator(URL, f"{parts.scheme.lower()}://{host}{path}{query}")
    if _DOMAIN.fullmatch(lower.rstrip(".")):
        return Indicator(DOMAIN, lower.rstrip("."))
    raise ValueError("it is not a SHA256 or SHA1 hash, an IP address, a domain or a URL")
