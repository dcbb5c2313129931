"""The SIEM feed on the `backend` fixture with a clock the test moves: what the alert,
incident and cluster feed suites share."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.siem.feed import Feed, Filters
from shared.storage.alerts import AlertRepository
from shared.storage.memory.ingest import MemoryAlerts
from shared.storage.memory.siem import MemorySiemFeed
from shared.storage.siem_feed import SiemFeedRepository

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, at: float = T0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def clocked_feed(backend, prefix: str) -> Feed:
    """A feed on tables of this test alone (`prefix`), its clock as `feed.test_clock`."""
    clock = Clock()
    entries = backend.repo(SiemFeedRepository, f"{prefix}Feed", MemorySiemFeed)
    alerts = backend.repo(AlertRepository, f"{prefix}Alerts", MemoryAlerts)
    made = Feed(entries, alerts, 5, 7, clock)
    made.test_clock = clock  # type: ignore[attr-defined]
    return made


def read_settled(feed: Feed, filters: Filters | None = None) -> list[dict]:
    """Every event of the feed, a minute on (past its settle time)."""
    feed.test_clock.at += 60  # type: ignore[attr-defined]
    return feed.read(feed.start(), 100, filters or Filters()).events
