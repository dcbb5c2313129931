"""Recipients checked at send time: an address stored by an older version that is not one
(a trailing newline, two addresses in one) is refused alone, the others still get the email."""

from __future__ import annotations

from shared.addresses import parse_address
from shared.logsafe import clean


def split_recipients(addresses: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """(deliverable addresses, [{"address", "reason"}] refused before sending)."""
    good: list[str] = []
    refused: list[dict[str, str]] = []
    for address in addresses:
        try:
            normal = _ascii(parse_address(address))
        except ValueError as exc:
            refused.append({"address": clean(address, 320), "reason": str(exc)[:200]})
            continue
        if normal.lower() not in (g.lower() for g in good):
            good.append(normal)
    return good, refused


def _ascii(address: str) -> str:
    """What a server without SMTPUTF8 takes: the domain in IDNA; a non-ASCII mailbox is
    refused here rather than failing every retry at the server."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise ValueError("a mailbox name with non-ASCII characters is not supported")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise ValueError("the domain cannot be written in ASCII (IDNA)") from None
