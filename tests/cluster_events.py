"""ClusterEvents built for tests of their consumers (notify, SIEM): shared/correlation/
produces them; these are what it sends, hostile text included."""

from __future__ import annotations

from typing import Any

from shared.correlation.model import Indicator
from shared.messages import ClusterEvent

HOSTILE_URL = "https://x/<script>alert(1)</script>?a=1|b=2\\c"
TENANTS = [
    {"id": "11111111-1111-4111-8111-111111111111", "name": "Contoso <b>Ltd</b>", "alerts": 3},
    {"id": "22222222-2222-4222-8222-222222222222", "name": "Evil\r\nBcc: x@attacker.example",
     "alerts": 1},
    {"id": "33333333-3333-4333-8333-333333333333", "name": "Fabrikam", "alerts": 2},
]


def cluster_event(kind: str = "url", value: str = HOSTILE_URL, version: int = 1,
                  tenants: list[dict[str, Any]] | None = None,
                  joined: list[dict[str, Any]] | None = None,
                  severities: dict[str, int] | None = None,
                  last_seen: str = "2026-11-30T09:30:00.0000000Z") -> ClusterEvent:
    """Version 1 is `new` with every tenant joined; a later one `grew` by `joined` (the
    last tenant by default)."""
    tenants = TENANTS[:2] if tenants is None else tenants
    if joined is None:
        joined = tenants if version == 1 else tenants[-1:]
    return ClusterEvent(
        indicator_kind=kind, indicator=value, key=Indicator(kind, value).key,
        version=version, change="new" if version == 1 else "grew",
        tenants=tenants, joined=joined, first_seen="2026-11-29T08:00:00.0000000Z",
        last_seen=last_seen, alert_count=sum(t.get("alerts", 1) for t in tenants),
        severities=severities if severities is not None else {"High": 1, "Medium": 3})
