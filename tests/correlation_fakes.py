"""A CorrelationReads over a list of sightings, for the portal's and the API's unit
tests: clusters are worked out on each read (at least `min_tenants` tenants), cursors are
offsets (a cursor it never gave is a ValueError, as the real service's)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.correlation.model import Cluster, Indicator, Sighting, Suppression, TenantReach

RANK = {"High": 3, "Medium": 2, "Low": 1, "Informational": 0}


class FakeCorrelation:
    def __init__(self, min_tenants: int = 2) -> None:
        self.min_tenants = min_tenants
        self.sightings: list[Sighting] = []
        self.suppressed: dict[Indicator, Suppression] = {}
        self.removed: list[tuple[Indicator, str]] = []

    def see(self, indicator: Indicator, tenant_id: str, tenant_name: str, alert_id: str,
            seen_at: str, severity: str = "High", title: str = "an alert") -> None:
        self.sightings.append(Sighting(indicator, tenant_id, tenant_name, alert_id, seen_at,
                                       severity, title, "mde"))

    # CorrelationReads ------------------------------------------------------------------
    def _cluster(self, indicator: Indicator) -> Cluster | None:
        if indicator in self.suppressed:
            return None
        found = sorted((s for s in self.sightings if s.indicator == indicator),
                       key=lambda s: s.seen_at, reverse=True)
        reach: dict[str, TenantReach] = {}
        severities: dict[str, int] = {}
        for s in found:
            part = reach.setdefault(s.tenant_id, TenantReach(
                s.tenant_id, s.tenant_name, s.seen_at, s.seen_at))
            part.first_seen = min(part.first_seen, s.seen_at)
            part.alert_ids.append(s.alert_id)
            part.alert_count += 1
            if s.severity and RANK.get(s.severity, -1) > RANK.get(part.max_severity or "", -1):
                part.max_severity = s.severity
            if s.severity:
                severities[s.severity] = severities.get(s.severity, 0) + 1
        if len(reach) < self.min_tenants:
            return None
        return Cluster(indicator, len(reach) - self.min_tenants + 1, list(reach.values()),
                       found[-1].seen_at, found[0].seen_at, len(found), severities)

    def clusters(self, order: str = "recent", cursor: str | None = None, limit: int = 50
                 ) -> tuple[list[Cluster], str | None]:
        indicators = dict.fromkeys(s.indicator for s in self.sightings)
        found = [c for c in map(self._cluster, indicators) if c is not None]
        if order == "reach":
            found.sort(key=lambda c: (c.reach, c.last_seen), reverse=True)
        else:
            found.sort(key=lambda c: c.last_seen, reverse=True)
        return _page(found, cursor, limit)

    def cluster(self, indicator: Indicator) -> Cluster | None:
        return self._cluster(indicator)

    def lookup(self, indicator: Indicator, since: str | None = None,
               cursor: str | None = None, limit: int = 100
               ) -> tuple[list[Sighting], str | None]:
        found = sorted((s for s in self.sightings if s.indicator == indicator
                        and (since is None or s.seen_at >= since)),
                       key=lambda s: s.seen_at, reverse=True)
        return _page(found, cursor, limit)

    def alert_indicators(self, tenant_id: str, alert_id: str) -> list[tuple[Indicator, int]]:
        mine = dict.fromkeys(s.indicator for s in self.sightings
                             if (s.tenant_id, s.alert_id) == (tenant_id, alert_id))
        return [(i, len({s.tenant_id for s in self.sightings
                         if s.indicator == i and s.tenant_id != tenant_id})) for i in mine]

    def suppressions(self) -> list[Suppression]:
        return sorted(self.suppressed.values(), key=lambda s: s.created, reverse=True)

    def suppress(self, indicator: Indicator, reason: str, author: str) -> Suppression:
        return self.suppressed.setdefault(indicator, Suppression(
            indicator, reason, author, datetime.now(UTC).isoformat()))

    def unsuppress(self, indicator: Indicator, author: str) -> bool:
        if self.suppressed.pop(indicator, None) is None:
            return False
        self.removed.append((indicator, author))
        return True


def _page(items: list, cursor: str | None, limit: int) -> tuple[list, str | None]:
    if cursor is not None and not (cursor.isdigit() and int(cursor) <= len(items)):
        raise ValueError("not a cursor this service gave")
    start = int(cursor or 0)
    end = start + limit
    return items[start:end], str(end) if end < len(items) else None
