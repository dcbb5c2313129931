"""What the worker needs of an alert in each source's schema: its key in the version index
and the alert table, its version, its index day, its index entry, and how a chunk moves
the cursor.

Why one entry form for both: a tenant moved from `mde` to `graph` meets its endpoint
alerts again in Graph's schema. Keyed by `providerAlertId` (the Defender for Endpoint id)
and tracked in Defender's spelling ("New", "High", "TruePositive"), an alert unchanged
since its mde version classifies as unchanged, not as a second "new" alert.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared import timefmt
from shared.alerts.view import GRAPH, MDE_SOURCE, AlertView
from shared.ingest.events import tracked
from shared.model import Cursor


def advance(position: Cursor, versions: list[str]) -> Cursor:
    """The query position after consuming `versions` (ascending) from `position`."""
    if not versions or versions[-1] < position.watermark:
        return position
    last = versions[-1]
    at_last = sum(1 for v in versions if v == last)
    return Cursor(last, at_last + (position.skip if last == position.watermark else 0))


def later(a: Cursor | None, b: Cursor) -> Cursor:
    """The cursor never moves back."""
    if a is None:
        return b
    return max(a, b, key=lambda c: (c.watermark, c.skip))


def _day(created: Any, version: str) -> str:
    """The index day: the alert's creation day (UTC), else its version's."""
    try:
        return timefmt.utc_day(created)
    except ValueError:  # none, or not a time
        return timefmt.utc_day(version)


class MdeSchema:
    """Defender for Endpoint's `/api/alerts`: ascending lastUpdateTime, $skip paging."""

    name = "mde"
    version_field = "lastUpdateTime"

    @staticmethod
    def key(alert: dict[str, Any]) -> str:
        return str(alert["id"])

    @staticmethod
    def day(alert: dict[str, Any], version: str) -> str:
        return _day(alert.get("alertCreationTime"), version)

    @staticmethod
    def view(alert: dict[str, Any]) -> AlertView | None:
        """None: an mde alert is in the canonical names already."""
        return None

    @staticmethod
    def entry(alert: dict[str, Any], version: str, view: AlertView | None = None
              ) -> list[Any]:
        return tracked(alert, version)

    @staticmethod
    def moved(position: Cursor, committed: Cursor | None, versions: list[str]
              ) -> tuple[Cursor, Cursor]:
        """(the query position, the cursor to commit) after a chunk of `versions`."""
        position = advance(position, versions)
        return position, later(committed, position)


class GraphSchema:
    """Graph's alerts_v2: no documented order, paging by nextLink (docs/ingest.md)."""

    name = "graph"
    version_field = "lastUpdateDateTime"

    @staticmethod
    def key(alert: dict[str, Any]) -> str:
        """An endpoint alert's Defender for Endpoint id (`providerAlertId`), so it is the
        same alert it was under `mde`; any other alert's Graph id."""
        provider = alert.get("providerAlertId")
        if alert.get("serviceSource") == MDE_SOURCE and isinstance(provider, str) \
                and provider:
            return provider
        return str(alert["id"])

    @staticmethod
    def day(alert: dict[str, Any], version: str) -> str:
        return _day(alert.get("createdDateTime"), version)

    @staticmethod
    def view(alert: dict[str, Any]) -> AlertView | None:
        """The alert parsed once, for the entry, the row and the event of its chunk."""
        return AlertView.of(alert, GRAPH)

    @staticmethod
    def entry(alert: dict[str, Any], version: str, view: AlertView | None = None
              ) -> list[Any]:
        """In the hub's canonical (Defender's) spelling, through the alert view (`view`:
        the alert parsed already)."""
        return tracked(alert, version, GRAPH, view)

    @staticmethod
    def moved(position: Cursor, committed: Cursor | None, versions: list[str]
              ) -> tuple[Cursor, Cursor]:
        """The chain's position with the latest version met; it is the cursor to commit
        (its nextLink, so a killed run resumes at the page it was reading)."""
        if versions and versions[-1] > position.high:
            position = replace(position, high=versions[-1])
        return position, position


Schema = type[MdeSchema] | type[GraphSchema]
SCHEMAS: dict[str, Schema] = {"mde": MdeSchema, "graph": GraphSchema}  # by `Tenant.source`
