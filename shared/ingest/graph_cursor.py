"""A graph tenant's cursor: a watermark that moves only when a whole chain has been read.

Why not Defender's (watermark + skip, moved per chunk): alerts_v2 documents no `$orderby`,
so a page can hold alerts older and newer than the next one; skip counts mean nothing and a
watermark moved to the newest alert of a page would pass over older ones still to come.

A chain is the query `lastUpdateDateTime ge <watermark - overlap>` and the nextLinks it
answers. While it is read the cursor keeps the watermark where it was, the nextLink of the
page being read (a killed run resumes there), the latest version met (`high`) and when the
chain started. At its end the watermark moves to the latest version met, but not past the
chain's start: an alert updated while the chain was read may have moved to a page already
read, and its new version is after the start. The version index makes every re-read
harmless; an expired nextLink restarts the chain from the watermark.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta

from shared import timefmt
from shared.microsoft.graph_security import GRAPH_SCOPE, MAX_TOP
from shared.model import Cursor

SCOPE = GRAPH_SCOPE
# a tenant moved from mde: its first graph query starts this far before the mde watermark
# (besides the overlap), in case Graph stamps an endpoint alert's lastUpdateDateTime a
# little after Defender's lastUpdateTime; what it re-reads is recognised by the index
HANDOVER_SECONDS = 3_600

__all__ = ["HANDOVER_SECONDS", "MAX_TOP", "SCOPE", "at_link", "ended", "restarted",
           "since", "start"]


def start(committed: Cursor | None, now: str, lookback_days: int, overlap: int) -> Cursor:
    """Where a run begins: the chain a checkpoint left unfinished, else a new chain from
    the watermark (the lookback for a new tenant; before an mde cursor, the handover)."""
    if committed is None:
        first = timefmt.to_datetime(now) - timedelta(days=lookback_days)
        return Cursor(timefmt.from_datetime(first.astimezone(UTC)), source="graph",
                      started=now)
    if committed.source != "graph":  # the tenant was moved from mde: hand over
        return Cursor(timefmt.shift(committed.watermark, -HANDOVER_SECONDS),
                      source="graph", started=now)
    if committed.link:
        return committed
    return replace(committed, high="", started=now)


def since(position: Cursor, overlap: int) -> str:
    """The `ge` time of a chain's first query ("" when a nextLink is followed)."""
    if position.link:
        return ""
    return timefmt.shift(position.watermark, -overlap) if overlap else position.watermark


def at_link(position: Cursor, link: str) -> Cursor:
    """The chain goes on at the page `link` names."""
    return replace(position, link=link)


def restarted(position: Cursor) -> Cursor:
    """The nextLink expired: the chain is read again from its first query (what it met,
    and when it started, still hold)."""
    return replace(position, link="")


def ended(position: Cursor) -> Cursor:
    """The cursor at rest after the whole chain was read."""
    watermark = position.watermark
    if position.high:
        moved = min(position.high, position.started) if position.started else position.high
        watermark = max(watermark, moved)
    return Cursor(watermark, source="graph")
