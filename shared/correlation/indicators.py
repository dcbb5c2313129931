"""Indicators from an alert's evidence, normalised so that the same hash, address, domain
or URL read through either API (Defender for Endpoint's flat items, Graph's typed ones)
is one value, and so one storage partition.

Why so strict: every value is attacker-controlled text, and a wrong "match" across
customers is worse than a missed one. A hash is only a hash of its exact length in hex;
an IP only a public one by default (private ranges repeat at every customer and mean
nothing across them); a URL is rebuilt from its parts (scheme and host lower-case, the
host IDNA-encoded, default port, trailing dots, fragment and credentials dropped, the
characters a browser would escape percent-encoded), so `<script>` in one becomes `%3C...`
before it is ever stored. A value the event summary cut (ending in "…") is not an
indicator: its end is unknown.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from shared.alerts.evidence import Evidence
from shared.alerts.view import AlertView
from shared.correlation.model import DOMAIN, FILE_NAME, IP, KINDS, SHA1, SHA256, URL, Indicator

CUT = "…"  # what the event summary appends to a string it cut (shared/ingest/events.py)
MAX_URL = 2048  # longer is not a URL anyone pastes, and keeps a stored row small
MAX_FILE_NAME = 260
_HEX = re.compile(r"[0-9a-fA-F]+")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
_SCHEMES = frozenset(("http", "https", "ftp", "ws", "wss"))
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_OTHER_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?![0-9])")  # mailto:, javascript:
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DOCUMENTATION = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


@dataclass(frozen=True)
class Options:
    """What the settings add: private addresses kept, known-bad tool names."""

    include_private: bool = False
    tool_names: frozenset[str] = frozenset()  # lower-case file names


def indicators(view: AlertView, options: Options = Options()) -> list[Indicator]:
    """The alert's indicators, each once, in evidence order."""
    return of_evidence(view.evidence, options)


def of_evidence(items: Iterable[Evidence], options: Options = Options()) -> list[Indicator]:
    found: dict[Indicator, None] = {}
    for item in items:
        for indicator in _of_item(item, options):
            found.setdefault(indicator, None)
    return list(found)


def _of_item(item: Evidence, options: Options) -> Iterable[Indicator]:
    if (value := _hash(item.sha256, 64)) is not None:
        yield Indicator(SHA256, value)
    if (value := _hash(item.sha1, 40)) is not None:
        yield Indicator(SHA1, value)
    if _whole(item.ip):
        address = _address(str(item.ip).strip(), options.include_private)
        if address is not None:
            yield Indicator(IP, address)
    if _whole(item.url):
        yield from _of_url_text(str(item.url), options.include_private)
    if options.tool_names and _whole(item.file_name):
        name = str(item.file_name).strip().lower()
        if name in options.tool_names:
            yield Indicator(FILE_NAME, name)


def _whole(value: str | None) -> bool:
    return bool(value) and not str(value).endswith(CUT)


def _hash(value: str | None, length: int) -> str | None:
    if not value or len(value) != length or not _HEX.fullmatch(value):
        return None
    return value.lower()


# IP addresses ---------------------------------------------------------------------------
def _address(text: str, include_private: bool) -> str | None:
    """The address's canonical text, None when it is no address or not kept."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_loopback or address.is_multicast:
        return None
    if not include_private and not public(address):
        return None
    return str(address)


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Routable on the internet: not private, link-local, reserved, CGNAT (100.64/10) or
    a documentation range."""
    if (address.is_private or address.is_link_local or address.is_reserved
            or address.is_multicast or address.is_unspecified or address.is_loopback):
        return False
    if address.version == 4 and address in _CGNAT:
        return False
    return not any(address in net for net in _DOCUMENTATION if net.version == address.version)


# domains and URLs -----------------------------------------------------------------------
def normal_domain(text: str) -> str:
    """The domain in lower-case ASCII (IDNA), without trailing dots; ValueError with why."""
    host = text.strip().rstrip(".").lower()
    if not host:
        raise ValueError("empty domain")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError("not a valid domain name") from None
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2:
        raise ValueError("a domain needs at least two labels (at most 253 characters)")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("a domain's labels are letters, digits and inner hyphens")
    if labels[-1].isdigit():
        raise ValueError("a domain's last label is not a number")
    return host


def normal_url(text: str) -> tuple[str, str]:
    """(the URL normalised, its host: a domain or an address); ValueError with why."""
    text = text.strip()
    if len(text) > MAX_URL:
        raise ValueError(f"a URL is at most {MAX_URL} characters")
    if "://" not in text:
        if _OTHER_SCHEME.match(text) or "@" in text.split("/", 1)[0]:
            raise ValueError("not a web URL")
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL (host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"not a web URL (scheme {scheme[:20]!r})")
    raw_host = parts.hostname or ""
    if not raw_host:
        raise ValueError("a URL needs a host")
    address = _address(raw_host, include_private=True)
    if address is not None:
        host = address
        shown = f"[{address}]" if ":" in address else address
    else:
        host = normal_domain(raw_host)
        shown = host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        shown = f"{shown}:{port}"
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return f"{scheme}://{shown}{path}{'?' + query if query else ''}", host


def _of_url_text(text: str, include_private: bool) -> Iterable[Indicator]:
    """A URL and its domain (or public address); a bare host is a domain alone."""
    bare = "://" not in text and "/" not in text.strip()
    try:
        url, host = normal_url(text)
    except ValueError:
        return
    is_address = _address(host, include_private=True) is not None
    if not bare:
        yield Indicator(URL, url)
    if not is_address:
        yield Indicator(DOMAIN, host)
    elif (kept := _address(host, include_private)) is not None:
        yield Indicator(IP, kept)


# a pasted search value ------------------------------------------------------------------
def parse_indicator(text: str) -> Indicator:
    """The indicator a person pasted: a hash, an IP, a domain or a URL (or `kind:value`,
    e.g. `file_name:mimikatz.exe`). ValueError with a reason a 400 can show."""
    if not isinstance(text, str):
        raise ValueError("an indicator is text")
    value = text.strip()
    if not value:
        raise ValueError("empty indicator")
    if len(value) > MAX_URL:
        raise ValueError(f"an indicator is at most {MAX_URL} characters")
    if value.endswith(CUT):
        raise ValueError("the value was cut (ends with …): paste it whole")
    kind, _, rest = value.partition(":")
    if kind.lower() in KINDS and rest and not rest.startswith("//"):
        return _of_kind(kind.lower(), rest.strip())
    if _HEX.fullmatch(value) and len(value) in (64, 40):
        return Indicator(SHA256 if len(value) == 64 else SHA1, value.lower())
    address = _address(value, include_private=True)
    if address is not None:
        return Indicator(IP, address)
    if "://" in value or "/" in value:
        return Indicator(URL, normal_url(value)[0])
    return Indicator(DOMAIN, normal_domain(value))


def _of_kind(kind: str, value: str) -> Indicator:
    if kind in (SHA256, SHA1):
        length = 64 if kind == SHA256 else 40
        found = _hash(value, length)
        if found is None:
            raise ValueError(f"a {kind} is {length} hexadecimal digits")
        return Indicator(kind, found)
    if kind == IP:
        address = _address(value, include_private=True)
        if address is None:
            raise ValueError("not an IP address (or unspecified, loopback, multicast)")
        return Indicator(IP, address)
    if kind == URL:
        return Indicator(URL, normal_url(value)[0])
    if kind == DOMAIN:
        return Indicator(DOMAIN, normal_domain(value))
    name = value.lower()
    if len(name) > MAX_FILE_NAME or any(c in name for c in "/\\\x00"):
        raise ValueError("a file name is at most 260 characters, without a path")
    return Indicator(FILE_NAME, name)
