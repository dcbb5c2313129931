"""The feed's shapes, shared by the feed service and its repository: where a reader is
(an hourly bucket and the last key seen in it), what it filters on, and a page read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HOUR = "%Y%m%d%H"
END = "~"  # sorts after every key of a bucket ("digits|...")


@dataclass(frozen=True)
class Position:
    """Just after the last entry a reader has seen."""

    bucket: str
    after: str = ""


@dataclass(frozen=True)
class Filters:
    tenants: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    since: str = ""  # normalized lastUpdateTime bounds
    until: str = ""


@dataclass
class Page:
    events: list[dict[str, Any]] = field(default_factory=list)
    position: Position = Position("")
    more: bool = False


def bucket_of(micros: int) -> str:
    """The hourly bucket of a feed time (microseconds since the epoch)."""
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime(HOUR)
