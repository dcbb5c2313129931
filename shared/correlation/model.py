"""Indicators, their sightings and cross-tenant clusters: the shapes every part of the
correlation feature (indexing, portal, API, notify, SIEM) shares."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

# Indicator kinds, in the order the portal lists them
SHA256, SHA1, IP, DOMAIN, URL, FILE_NAME = "sha256", "sha1", "ip", "domain", "url", "file_name"
KINDS = (SHA256, SHA1, IP, DOMAIN, URL, FILE_NAME)


@dataclass(frozen=True, slots=True)
class Indicator:
    """A normalised indicator (shared/correlation/indicators.py makes them): `value` is
    attacker-controlled text, escaped wherever it is shown."""

    kind: str
    value: str

    @property
    def key(self) -> str:
        """Storage-safe and fixed-length (a URL holds `/`, `?`, `#`, which keys refuse)."""
        digest = hashlib.sha256(f"{self.kind}:{self.value}".encode()).hexdigest()
        return f"{self.kind}-{digest[:40]}"

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(slots=True)
class Sighting:
    """One alert of one tenant that holds the indicator. `seen_at` is the alert's creation
    time (ISO 8601 UTC, fixed for the alert's life), so every version of the alert is the
    same sighting."""

    indicator: Indicator
    tenant_id: str
    tenant_name: str
    alert_id: str
    seen_at: str
    severity: str | None = None
    title: str | None = None
    product: str | None = None


@dataclass(slots=True)
class TenantReach:
    """One tenant's part in a cluster."""

    tenant_id: str
    tenant_name: str
    first_seen: str
    last_seen: str
    alert_ids: list[str] = field(default_factory=list)  # newest first, capped
    alert_count: int = 0
    max_severity: str | None = None


@dataclass(slots=True)
class Cluster:
    """An indicator seen in at least N tenants within the window. `version` grows by one
    each time a tenant joins (1 = it became a cluster); one event per version."""

    indicator: Indicator
    version: int
    tenants: list[TenantReach]
    first_seen: str
    last_seen: str
    alert_count: int
    severities: dict[str, int] = field(default_factory=dict)  # severity -> alerts

    @property
    def reach(self) -> int:
        return len(self.tenants)


@dataclass(slots=True)
class Suppression:
    """An indicator the MSSP declared benign (its own tooling, a common binary)."""

    indicator: Indicator
    reason: str
    author: str
    created: str
