"""The one-off backfill for a store written before tenant summaries and the SIEM feed's
tenant views: each tenant's tally (and its summary) recounted from the Alerts table, and
each hour of the feed copied into its tenants' views. Resumable: each part records how
far it got (a tenant, an hour) and a rerun goes on from there; every step is idempotent,
so one cut short is simply done again.

A tenant is recounted while the backfill holds both its fetch lease and its relay lease,
so no worker commits and no relay counts meanwhile; the events still in its outbox are
taken back from the recount (the relay counts them when it sends them), so the tally
ends at the recount once they are relayed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.ingest import tally as tallies
from shared.siem.feed_model import HOUR
from shared.storage.alerts import AlertRepository
from shared.storage.ingest_state import IngestState, IngestStates, Tally
from shared.storage.siem_feed import SiemFeedRepository
from shared.storage.tenant_summaries import TenantSummaries, first_day, next_seq, recount
from shared.storage.tenants import TenantRepository

LEASE_SECONDS = 120
WAIT_SECONDS = 2.0
TRIES = 90  # a lease held by a worker or a relay is waited for up to three minutes
SCAN_LIMIT = 5_000_000  # alert rows of one tenant (open or raised in KEEP_DAYS)


@dataclass
class Report:
    tenants: int = 0
    hours: int = 0
    entries: int = 0


def _hours(first: str, last: str) -> Iterator[str]:
    when, end = datetime.strptime(first, HOUR), datetime.strptime(last, HOUR)
    while when <= end:
        yield when.strftime(HOUR)
        when += timedelta(hours=1)


class Backfill:
    def __init__(self, tenants: TenantRepository, states: IngestStates,
                 alerts: AlertRepository, summaries: TenantSummaries,
                 feed: SiemFeedRepository | None, retention_days: int = 30,
                 log: Callable[[str], Any] = lambda _: None,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        self.tenants, self.states, self.alerts = tenants, states, alerts
        self.summaries, self.feed, self.retention_days = summaries, feed, retention_days
        self.log, self.sleep = log, sleep

    def run(self, restart: bool = False) -> Report:
        """Both parts, from where an earlier run stopped (`restart`: from the start)."""
        if restart:
            for part in ("tenants", "feed"):
                self.summaries.save_progress(part, "")
        report = Report()
        done = self.summaries.progress("tenants")
        todo = sorted(t.tenant_id for t in self.tenants.all() if t.tenant_id > done)
        for n, tenant_id in enumerate(todo, 1):
            self.recount_tenant(tenant_id)
            self.summaries.save_progress("tenants", tenant_id)
            report.tenants += 1
            self.log(f"tenants: {n}/{len(todo)} ({tenant_id})")
        if self.feed is not None:
            now = datetime.now(UTC)
            start = (now - timedelta(days=self.retention_days + 1)).strftime(HOUR)
            done = self.summaries.progress("feed")
            for bucket in _hours(max(start, done), now.strftime(HOUR)):
                if bucket <= done:
                    continue
                report.entries += self.feed.copy_hour_to_views(bucket)
                self.summaries.save_progress("feed", bucket)
                report.hours += 1
                if report.hours % 24 == 0:
                    self.log(f"feed: through {bucket}, {report.entries} entries copied")
        return report

    def recount_tenant(self, tenant_id: str) -> Tally:
        """The tenant's tally set to the recount less its outbox's unsent events, and
        copied to the summaries, under its fetch and relay leases."""
        state = self.states.of(tenant_id)
        owner = f"backfill-{uuid.uuid4().hex}"
        self._wait(lambda: state.acquire_lease(owner, LEASE_SECONDS)[0], tenant_id)
        try:
            relay_etag = self._wait(
                lambda: state.take_relay_lease(owner, LEASE_SECONDS)[0], tenant_id)
            try:
                return self._recount(state, tenant_id)
            finally:
                state.release_relay_lease(relay_etag)
        finally:
            state.release_lease(owner)

    def _recount(self, state: IngestState, tenant_id: str) -> Tally:
        today = datetime.now(UTC).date()
        tally = state.tally()
        rows, cut = self.alerts.open_or_raised_since(tenant_id, first_day(today), SCAN_LIMIT)
        if cut:
            raise RuntimeError(f"tenant {tenant_id}: more than {SCAN_LIMIT} alert rows")
        unsent: list[dict[str, Any]] = []
        for row_key in state.outbox_rows():
            loaded = state.outbox(row_key)
            if loaded is not None:
                events, sent, _ = loaded
                unsent += events[sent:]
        counts = tallies.uncounted(Tally(recount(rows, today), tally.seen), unsent, today)
        counts.seq = next_seq(tally.counts.seq)
        new = Tally(counts.trimmed(today), tally.seen, tally.copied, tally.etag)
        state.save_tally(new)
        self.summaries.publish(tenant_id, new.counts)
        new.copied = new.counts.seq
        state.save_tally(new)
        return new

    def _wait(self, take: Callable[[], Any], tenant_id: str) -> Any:
        for _ in range(TRIES):
            got = take()
            if got:
                return got
            self.sleep(WAIT_SECONDS)
        raise TimeoutError(f"tenant {tenant_id}: its lease stayed busy; run again later")
