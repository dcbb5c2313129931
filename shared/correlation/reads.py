"""What the portal and the API read of correlation (implemented by
shared/correlation/service.py; faked in tests). Every read costs what it shows: one
indicator's partition, one page of the cluster index, never a scan over tenants."""

from __future__ import annotations

from typing import Protocol

from shared.correlation.model import Cluster, Indicator, Sighting, Suppression


class CorrelationReads(Protocol):
    def clusters(self, order: str = "recent", cursor: str | None = None, limit: int = 50
                 ) -> tuple[list[Cluster], str | None]:
        """Clusters newest sighting first (`order="recent"`) or widest first
        (`order="reach"`), a page and the keyset cursor of the next (None: no more)."""
        ...

    def cluster(self, indicator: Indicator) -> Cluster | None:
        """The indicator's cluster with every tenant's part (None: not a cluster now)."""
        ...

    def lookup(self, indicator: Indicator, since: str | None = None,
               cursor: str | None = None, limit: int = 100
               ) -> tuple[list[Sighting], str | None]:
        """Every sighting of the indicator (newest first, from `since` if given)."""
        ...

    def alert_indicators(self, tenant_id: str, alert_id: str
                         ) -> list[tuple[Indicator, int]]:
        """The alert's indicators, each with how many OTHER tenants have it in the window."""
        ...

    def suppressions(self) -> list[Suppression]:
        ...

    def suppress(self, indicator: Indicator, reason: str, author: str) -> Suppression:
        """Idempotent: suppressing again keeps the first record."""
        ...

    def unsuppress(self, indicator: Indicator, author: str) -> bool:
        """False when it was not suppressed."""
        ...
