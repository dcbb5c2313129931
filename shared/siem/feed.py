"""The alert feed: every new or changed alert version once, in a stable order, for the
pull API and for each push output's own position.

Entries are keyed by the time they were written (microseconds) in hourly partitions.
Readers stop `settle` seconds short of now, and a writer whose write took longer than
half of that rewrites the entry with a fresh key, so an entry never appears behind a
reader's position: no gaps while alerts arrive. A ledger row per event id makes a
redelivered event a no-op, so each version is one entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from shared.messages import AlertEvent
from shared.siem.feed_model import END, HOUR, Filters, Page, Position, bucket_of
from shared.storage.alerts import AlertRepository, StoredAlert
from shared.storage.siem_feed import FeedEvent, SiemFeedRepository, ledger_day

# the feed's shapes are re-exported: readers (pull.py, delivery) import them from here
__all__ = ["END", "HOUR", "Feed", "Filters", "Page", "Position", "bucket_of"]
MAX_BUCKETS_PER_READ = 240  # ten days of empty hours per call at most
NO_FILTERS = Filters()


def _buckets(first: str, last: str) -> Iterator[str]:
    when = datetime.strptime(first, HOUR)
    end = datetime.strptime(last, HOUR)
    while when <= end:
        yield when.strftime(HOUR)
        when += timedelta(hours=1)


def _copied(event: AlertEvent, stored: StoredAlert | None) -> dict[str, bytes]:
    """What of the stored alert an entry copies: its body, if it is this version's."""
    if stored is None or stored.version != event.version or stored.body_rows != 1:
        return {}  # superseded already, or too large to copy: the summary stands in
    return dict(stored.body)


class Feed:
    """The feed over its repository; `alerts` gives the stored alert copied into entries."""

    def __init__(self, entries: SiemFeedRepository, alerts: AlertRepository,
                 settle_seconds: int, retention_days: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.entries = entries
        self.alerts = alerts
        self.settle_us = settle_seconds * 1_000_000
        self.retention_days = retention_days
        self.clock = clock
        self._pruned_at = -1e9

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def horizon_us(self) -> int:
        """Readers see entries keyed up to here; later ones may still be in flight."""
        return self.now_us() - self.settle_us

    def start(self, since: datetime | None = None) -> Position:
        """Where a new reader starts: the hour before `since`, or the retention start."""
        floor = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=self.retention_days)
        when = max(since - timedelta(hours=1), floor) if since else floor
        return Position(when.strftime(HOUR))

    # writing -----------------------------------------------------------------------------
    def append_all(self, events: list[FeedEvent]) -> list[bool]:
        """`append` for the events of a queue message (a batch), in three storage calls
        for the whole batch in the usual case instead of three per event: the stored
        alerts (one query per 14), the ledger rows (one transaction per day of versions:
        created together, so one of them there already means a redelivery, and those
        events go one at a time through `append`), the entries (one transaction).
        Crash-safe as `append` is: a batch stopped between its ledger rows and its
        entries is an event stopped there, which `append` takes over on redelivery.
        An incident or cluster event (one a message) has no stored alert to copy."""
        if any(not isinstance(e, AlertEvent) for e in events):
            return [self.append(e, None if isinstance(e, AlertEvent) else {})
                    for e in events]
        alerts = [e for e in events if isinstance(e, AlertEvent)]
        if len(alerts) < 2:
            return [self.append(event) for event in alerts]
        raws = self._raws(alerts)
        done: dict[str, bool] = {}
        by_day: dict[str, list[AlertEvent]] = {}
        for event in alerts:
            by_day.setdefault(ledger_day(event), []).append(event)
        for group in by_day.values():
            for start in range(0, len(group), 100):
                part = group[start:start + 100]
                stamp = self.now_us()
                if not self.entries.stamp_all(part, stamp):  # a redelivery, or a race
                    done.update((e.event_id, self.append(e, raws.get(e.event_id, {})))
                                for e in part)
                    continue
                self.entries.put_entries([(e, raws.get(e.event_id)) for e in part], stamp)
                if self.now_us() - stamp > self.settle_us // 2:  # too slow: re-key each
                    for event in part:
                        self._rekey(event, stamp, raws.get(event.event_id, {}))
                done.update((e.event_id, True) for e in part)
        return [done[event.event_id] for event in events]

    def _rekey(self, event: FeedEvent, stamp: int, raw: dict[str, bytes]) -> None:
        """The entry rewritten under a fresh stamp, the old one dropped (a reader may be
        past the old one)."""
        fresh = self.now_us()
        self.entries.put_entry(event, fresh, raw)
        self.entries.set_stamp(event, fresh)
        self.entries.drop_entry(event, stamp)

    def _raws(self, events: list[AlertEvent]) -> dict[str, dict[str, bytes]]:
        """`_raw` of each event (by event id), read in one query per tenant and 14."""
        raws: dict[str, dict[str, bytes]] = {}
        by_tenant: dict[str, list[AlertEvent]] = {}
        for event in events:
            by_tenant.setdefault(event.tenant_id, []).append(event)
        for tenant_id, group in by_tenant.items():
            found = self.alerts.get_stored_many(tenant_id, [e.alert_id for e in group])
            for event in group:
                raws[event.event_id] = _copied(event, found.get(event.alert_id))
        return raws

    def append(self, event: FeedEvent, raw: dict[str, bytes] | None = None) -> bool:
        """Add the event once; False when it was already in the feed (a redelivery).

        Three storage calls in the usual case: the stored alert (unless given as `raw`),
        the ledger row (created: it fails for a redelivery), the entry.
        """
        if raw is None:  # read before stamping: its time is not in the window
            raw = self._raw(event) if isinstance(event, AlertEvent) else {}
        half = self.settle_us // 2
        for _ in range(5):
            stamp, stale = self.now_us(), None
            earlier = self.entries.stamp_once(event, stamp)
            if earlier is not None:
                if self.entries.has_entry(event, earlier.stamp):
                    return False
                if stamp - earlier.stamp <= half:
                    stamp = earlier.stamp  # another delivery is writing it now: same key
                else:
                    stale = earlier.stamp  # an attempt that died: key it anew
                    if not self.entries.restamp(event, stamp, earlier.etag):
                        continue
            self.entries.put_entry(event, stamp, raw)
            if self.now_us() - stamp > half:  # too slow: a reader may be past
                stale, stamp = stamp, self.now_us()
                self.entries.put_entry(event, stamp, raw)
                self.entries.set_stamp(event, stamp)
            if stale is not None and stale != stamp:
                self.entries.drop_entry(event, stale)
            return True
        raise RuntimeError(f"feed ledger for {event.event_id} kept changing")

    def _raw(self, event: AlertEvent) -> dict[str, bytes]:
        """The stored Defender alert of this version, copied compressed as it is in Alerts."""
        return _copied(event, self.alerts.get_stored(event.tenant_id, event.alert_id))

    # reading -----------------------------------------------------------------------------
    def read(self, position: Position, limit: int, filters: Filters = NO_FILTERS) -> Page:
        """Up to `limit` events after `position`, and where to continue."""
        horizon = self.horizon_us()
        last = bucket_of(horizon)
        page = Page(position=position)
        end = Position(last, f"{horizon:016d}{END}")
        if (position.bucket, position.after) >= (end.bucket, end.after):
            return page  # already at the horizon (or the clock went back)
        for n, bucket in enumerate(_buckets(position.bucket, last)):
            if n == MAX_BUCKETS_PER_READ:
                page.more = True
                return page
            after = position.after if bucket == position.bucket else ""
            before = f"{horizon + 1:016d}" if bucket == last else None
            want = limit - len(page.events)
            for key, event in self.entries.entries(bucket, after, before, filters,
                                                   min(want, 1000)):
                page.events.append(event)
                if len(page.events) == limit:
                    page.position, page.more = Position(bucket, key), True
                    return page
            page.position = Position(bucket, END)
        page.position = end
        return page

    # retention ---------------------------------------------------------------------------
    def prune_if_due(self, every_seconds: int = 600) -> int:
        """Prune at most every few minutes per process (the timer fires far more often)."""
        now = time.monotonic()
        if now - self._pruned_at < every_seconds:
            return 0
        self._pruned_at = now
        return self.prune()

    def prune(self) -> int:
        """Delete entries and ledger rows older than the retention; returns rows deleted."""
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days + 1)
        through = self.entries.pruned_through() or (cutoff - timedelta(days=2)).strftime(HOUR)
        last = cutoff.strftime(HOUR)
        deleted = 0
        for bucket in _buckets(through, last):
            deleted += self.entries.drop_hour(bucket)
            if bucket.endswith("23"):  # the day's last hour: its ledger rows go too
                deleted += self.entries.drop_ledger_day(bucket[:8])
        self.entries.mark_pruned(last)
        return deleted
