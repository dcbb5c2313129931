"""Entra's raw error texts (AADSTS codes, trace ids, timestamps) in words an analyst
reads at a glance; the pages keep the raw text one click away."""

from __future__ import annotations

import re

_AADSTS = re.compile(r"AADSTS(\d+)")

PLAIN = {
    700016: "The customer's tenant no longer has our application (consent removed).",
    7000229: "The customer's tenant has no service principal for our application.",
    65001: "The customer's administrator has not granted consent.",
    90002: "The tenant was not found (deleted, or a wrong tenant id).",
    500011: "Microsoft Defender for Endpoint is not set up in the customer's tenant.",
    650052: "Microsoft Defender for Endpoint is not set up in the customer's tenant.",
    7000215: "Our application's client secret was refused (wrong value).",
    70002: "Our application's client secret was refused.",
    7000222: "Our application's client secret has expired.",
    700027: "Our application's certificate was refused.",
    700024: "Our application's sign-in assertion had expired (check the clock).",
    700011: "Our application was not found in Entra ID.",
    7000218: "Our application sent no credential.",
    50011: "The redirect URI is not registered on our application.",
    65004: "The administrator declined the consent.",
    70011: "A permission (scope) we asked for is not valid.",
}


def summary(text: str | None) -> str:
    """A plain sentence for a text carrying an AADSTS code; "" when there is none."""
    m = _AADSTS.search(text or "")
    if not m:
        return ""
    code = int(m.group(1))
    return PLAIN.get(code, f"Microsoft Entra ID refused the request (error AADSTS{code}).")
