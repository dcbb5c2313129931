"""Correlation: alert events in, each indicator's sightings and cross-tenant clusters kept,
a ClusterEvent per cluster version sent to the notify and SIEM queues; and the reads the
portal and the API make (`CorrelationReads`).

Idempotent under at-least-once delivery and a worker killed between any two writes:

1. Per (alert, indicator) one transaction writes the sighting (created: an alert already
   counted writes nothing), its tenant's reach, the head (under its ETag) and a new
   version's event (docs/correlation.md). A worker that loses the ETag reads again.
2. Then the head is published: the list page's index entries the head calls for are
   written and those it replaced deleted, the events of versions not yet sent are sent
   to both queues, and the head records what it published. A worker killed in between is
   finished by the redelivery (or by the next worker on the indicator), which sends the
   unmarked events again: consumers dedupe on `event_id`.

Suppressed indicators and those above the noise floor still record their sightings (a
lookup shows them) but make no version, send nothing and are not listed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared import timefmt
from shared.alerts.view import MDE, AlertView
from shared.config import CorrelationSettings
from shared.correlation.indicators import CUT, Options, indicators
from shared.correlation.model import Cluster, Indicator, Sighting, Suppression, TenantReach
from shared.messages import AlertEvent, ClusterEvent
from shared.storage.correlation import (
    MAX_ALERT_IDS,
    CorrelationStore,
    Head,
    IndexEntry,
    IndicatorState,
    index_keys,
)
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.queues import EventQueue

log = logging.getLogger("mssp_hub.correlation")
WORKERS = 8  # indicators recorded side by side (each its own partition)
KNOWN = 100_000  # indicator keys remembered as stored, per process
TRIES = 8  # ETag races on one indicator before the message is retried by the queue
MAX_EVENT_BYTES = 40_000  # base64 makes ~53 KB of the queue's 64 KB
SEVERITY_ORDER = {"Informational": 1, "Low": 2, "Medium": 3, "High": 4}
ReadAlert = Callable[[str, str], "tuple[dict[str, Any], str] | None"]


@dataclass
class Indexed:
    """What one `index` call did."""

    alerts: int = 0
    sightings: int = 0  # new ones written
    repeated: int = 0  # already counted (another version, a redelivery)
    versions: int = 0  # cluster versions made
    sent: int = 0  # events sent (to each queue)
    read_stored: int = 0  # alerts read from the Alerts table (summary cut)

    def add(self, other: Indexed) -> None:
        self.alerts += other.alerts
        self.read_stored += other.read_stored
        self.sightings += other.sightings
        self.repeated += other.repeated
        self.versions += other.versions
        self.sent += other.sent


@dataclass
class Seen:
    """An alert to index: whose, which, its view, and whether it is new (an alert's
    first event: its indicators are written before anything is read)."""

    tenant_id: str
    tenant_name: str
    alert_id: str
    view: AlertView
    new: bool = True


class Correlation:
    """Implements shared/correlation/reads.py CorrelationReads, and indexes alert events."""

    def __init__(self, store: CorrelationStore, notify: EventQueue, siem: EventQueue,
                 settings: CorrelationSettings, active_tenants: Callable[[], int],
                 read_alert: ReadAlert | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 workers: int = WORKERS) -> None:
        self.store, self.notify, self.siem = store, notify, siem
        self.settings, self.active_tenants = settings, active_tenants
        self.read_alert, self.now = read_alert, now
        self.options = Options(settings.include_private_ips, settings.tool_names)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="correlate")
        self._known: set[str] = set()  # indicators this process saw stored: read first
        # sightings this process saw counted and published: another version of the alert,
        # or a redelivery, costs nothing (a worker that dies takes this with it)
        self._done: set[tuple[str, str, str]] = set()

    # indexing -----------------------------------------------------------------------------
    def index(self, events: Iterable[AlertEvent]) -> Indexed:
        """Each event's indicators recorded (from its summary; from the stored alert when
        the summary was cut)."""
        done = Indexed()
        seen = []
        for event in events:
            seen.append(Seen(event.tenant_id, event.tenant_name, event.alert_id,
                             self._view(event, done), event.change == "new"))
        return self.index_views(seen, done)

    def index_views(self, alerts: Iterable[Seen], done: Indexed | None = None) -> Indexed:
        """Each alert's indicators recorded; suppressions and the active tenants read
        once for the batch. Indicators are independent partitions: each one's sightings
        are recorded in order on one thread, indicators side by side."""
        done = done or Indexed()
        groups: dict[Indicator, list[tuple[Sighting, bool]]] = {}
        for alert in alerts:
            view = alert.view
            seen_at = _time(view.created)
            if not seen_at:  # the sighting's key: without it, not indexable once
                continue
            done.alerts += 1
            for indicator in indicators(view, self.options):
                groups.setdefault(indicator, []).append((Sighting(
                    indicator, alert.tenant_id, alert.tenant_name, alert.alert_id, seen_at,
                    view.severity, view.title, view.product), alert.new))
        if not groups:
            return done
        suppressed = {s.indicator.key for s in self.store.suppressions()}
        active = self.active_tenants()

        def record(sightings: list[tuple[Sighting, bool]]) -> Indexed:
            part = Indexed()
            for sighting, new in sightings:
                self._sight(sighting, sighting.indicator.key in suppressed, active, part, new)
            return part

        for part in self._pool.map(record, groups.values()):
            done.add(part)  # parts count sightings, not alerts
        return done

    def _view(self, event: AlertEvent, done: Indexed) -> AlertView:
        """The event's summary as a view; the stored alert when the summary was cut."""
        brief = AlertView.of(event.alert, MDE)
        if self.read_alert is not None and _cut(event.alert, brief):
            found = self.read_alert(event.tenant_id, event.alert_id)
            if found is not None:
                done.read_stored += 1
                return AlertView.of(found[0], found[1])
        return brief

    def _sight(self, sighting: Sighting, suppressed: bool, active: int, done: Indexed,
               new: bool = True) -> None:
        indicator = sighting.indicator
        done_key = (indicator.key, sighting.tenant_id, sighting.alert_id)
        if done_key in self._done:
            done.repeated += 1
            return
        self._sight_once(sighting, suppressed, active, done, new)
        if len(self._done) >= KNOWN:
            self._done.clear()
        self._done.add(done_key)  # only once published: a failure leaves it to the retry

    def _sight_once(self, sighting: Sighting, suppressed: bool, active: int, done: Indexed,
                    new: bool) -> None:
        indicator = sighting.indicator
        for attempt in range(TRIES):
            if attempt == 0 and new and indicator.key not in self._known:
                # a new alert's indicator not seen here: most are new, so write as if it
                # were (one request); a head already there fails the write, and it reads
                state = IndicatorState(None, None, {})
            else:
                state = self.store.state(indicator)
                mine = state.reaches.get(sighting.tenant_id)
                if mine is not None and sighting.alert_id in mine.alert_ids:
                    done.repeated += 1  # counted: its reach row went in with its sighting
                    self._remember(indicator)
                    self._publish(state, done)
                    return
            head, reaches, event = self._plan(state, sighting, suppressed, active)
            try:
                etag = self.store.record(sighting, reaches[sighting.tenant_id], head,
                                         state.etag, event)
            except AlreadyExists:
                done.repeated += 1
                self._remember(indicator)
                self._publish(self.store.state(indicator), done)
                return
            except StateChanged:
                self._remember(indicator)
                continue  # another worker on this indicator: read again
            self._remember(indicator)
            done.sightings += 1
            done.versions += event is not None
            self._publish(IndicatorState(head, etag, reaches), done)
            return
        raise StateChanged(f"indicator {indicator.key} kept changing")

    def _remember(self, indicator: Indicator) -> None:
        if len(self._known) >= KNOWN:
            self._known.clear()
        self._known.add(indicator.key)

    def _plan(self, state: IndicatorState, s: Sighting, suppressed: bool, active: int
              ) -> tuple[Head, dict[str, TenantReach], tuple[int, str] | None]:
        """The head, the reaches and the new version's event (if any) once `s` counts."""
        old = state.reaches.get(s.tenant_id)
        reach = TenantReach(
            s.tenant_id, s.tenant_name or (old.tenant_name if old else ""),
            min(old.first_seen, s.seen_at) if old else s.seen_at,
            max(old.last_seen, s.seen_at) if old else s.seen_at,
            ([s.alert_id] + (old.alert_ids if old else []))[:MAX_ALERT_IDS],
            (old.alert_count if old else 0) + 1,
            _top(old.max_severity if old else None, s.severity))
        reaches = {**state.reaches, s.tenant_id: reach}
        head = replace(state.head) if state.head else Head(s.indicator)
        head.members, head.listed = list(head.members), [list(k) for k in head.listed]
        head.severities = dict(head.severities)
        head.first_seen = min(head.first_seen or s.seen_at, s.seen_at)
        head.last_seen = max(head.last_seen, s.seen_at)
        head.alert_count += 1
        severity = s.severity or "Unknown"
        head.severities[severity] = head.severities.get(severity, 0) + 1
        window = self._in_window(head, reaches)
        head.reach = len(window)
        head.quiet = "suppressed" if suppressed else "floor" if self._noise(
            len(window), active) else ""
        if head.quiet or len(window) < self.settings.min_tenants:
            return head, reaches, None
        joined = [r for r in window if r.tenant_id not in head.members]
        if not joined and head.version:
            return head, reaches, None
        head.version += 1
        head.members = [r.tenant_id for r in window]
        return head, reaches, (head.version, _event_text(head, window, joined))

    def _noise(self, reach: int, active: int) -> bool:
        floor = self.settings
        return active >= floor.floor_min_tenants and reach > floor.max_tenant_share * active

    def _in_window(self, head: Head, reaches: dict[str, TenantReach]) -> list[TenantReach]:
        """Tenants seen within the window before the indicator's last sighting, first
        seen first."""
        if not head.last_seen:
            return []
        cutoff = timefmt.shift(head.last_seen, -self.settings.window_days * 86_400)
        return sorted((r for r in reaches.values() if r.last_seen >= cutoff),
                      key=lambda r: (r.first_seen, r.tenant_id))

    def _publish(self, state: IndicatorState, done: Indexed) -> None:
        """Bring the index and the queues in step with the head, then record it."""
        head, etag = state.head, state.etag
        if head is None or etag is None:
            return
        target = index_keys(head) if head.version and not head.quiet else []
        stale = target != head.listed or (target and head.listed_count != head.alert_count)
        if not stale and head.published >= head.version:
            return
        if stale:
            tenants = self._in_window(head, state.reaches)
            self.store.put_listed(IndexEntry(p, rk, head, tenants) for p, rk in target)
            self.store.drop_listed(k for k in head.listed if k not in target)
        unsent = self.store.events(head.indicator, head.published) \
            if head.version > head.published else []
        for version, text in unsent:
            if version > head.version:
                break
            self.notify.send(text)
            self.siem.send(text)
            done.sent += 1
        published = replace(head, published=max(head.version, head.published),
                            listed=target, listed_count=head.alert_count if target else 0)
        try:
            self.store.mark_published(published, etag)
        except StateChanged:  # moved on: its writer publishes; take back what it replaced
            now = self.store.state(head.indicator).head
            newer = index_keys(now) if now and now.version and not now.quiet else []
            self.store.drop_listed(k for k in target if k not in newer)

    # reads (CorrelationReads) ----------------------------------------------------------------
    def clusters(self, order: str = "recent", cursor: str | None = None, limit: int = 50
                 ) -> tuple[list[Cluster], str | None]:
        limit = max(1, min(limit, 200))
        page, after = self.store.listed(order, cursor, limit)
        suppressed = {s.indicator.key for s in self.store.suppressions()}
        seen: set[str] = set()
        out = []
        for head, tenants in page:
            key = head.indicator.key
            if key in suppressed or key in seen:  # an entry a raced writer left: skipped
                continue
            seen.add(key)
            out.append(_cluster(head, tenants))
        return out, after

    def cluster(self, indicator: Indicator) -> Cluster | None:
        state = self.store.state(indicator)
        head = state.head
        if head is None or not head.version or head.quiet:
            return None
        if self.store.suppression(indicator) is not None:
            return None
        window = self._in_window(head, state.reaches)
        if len(window) < self.settings.min_tenants:
            return None
        return _cluster(head, window)

    def lookup(self, indicator: Indicator, since: str | None = None,
               cursor: str | None = None, limit: int = 100
               ) -> tuple[list[Sighting], str | None]:
        start = _time(since) if since else None
        if since and not start:
            raise ValueError("since is not an ISO 8601 time")
        return self.store.sightings(indicator, start, cursor, max(1, min(limit, 500)))

    def alert_indicators(self, tenant_id: str, alert_id: str
                         ) -> list[tuple[Indicator, int]]:
        found = self.read_alert(tenant_id, alert_id) if self.read_alert else None
        if found is None:
            return []
        out = []
        for indicator in indicators(AlertView.of(found[0], found[1]), self.options):
            state = self.store.state(indicator)
            others = 0
            if state.head is not None:
                others = sum(1 for r in self._in_window(state.head, state.reaches)
                             if r.tenant_id != tenant_id)
            out.append((indicator, others))
        return out

    def suppressions(self) -> list[Suppression]:
        return self.store.suppressions()

    def suppress(self, indicator: Indicator, reason: str, author: str) -> Suppression:
        return self.store.suppress(Suppression(indicator, reason, author, self._stamp()))

    def unsuppress(self, indicator: Indicator, author: str) -> bool:
        return self.store.unsuppress(indicator, author, self._stamp())

    def removals(self) -> list[dict[str, str]]:
        """Who removed which suppression, when (beyond CorrelationReads: the audit)."""
        return self.store.removals()

    def _stamp(self) -> str:
        return timefmt.from_datetime(self.now())


def _time(text: Any) -> str:
    if not isinstance(text, str) or not text:
        return ""
    try:
        return timefmt.normalize(text)
    except ValueError:
        return ""


def _cut(summary: dict[str, Any], view: AlertView) -> bool:
    """Whether the event's summary left evidence out or cut a value of it."""
    count = summary.get("evidenceCount")
    if isinstance(count, int) and count > len(view.evidence):
        return True
    return any(isinstance(v, str) and v.endswith(CUT)
               for item in summary.get("evidence") or [] if isinstance(item, dict)
               for v in item.values())


def _top(a: str | None, b: str | None) -> str | None:
    return max((s for s in (a, b) if s), key=lambda s: SEVERITY_ORDER.get(s, 0),
               default=None)


def _cluster(head: Head, tenants: list[TenantReach]) -> Cluster:
    return Cluster(head.indicator, head.version, tenants, head.first_seen, head.last_seen,
                   head.alert_count, dict(head.severities))


def _event_text(head: Head, window: list[TenantReach], joined: list[TenantReach]) -> str:
    """The version's ClusterEvent text, within a queue message: names dropped, then the
    list cut, for a cluster of hundreds of tenants (logged)."""
    def made(tenants: list[dict[str, Any]], joins: list[dict[str, Any]]) -> str:
        return ClusterEvent(
            indicator_kind=head.indicator.kind, indicator=head.indicator.value,
            key=head.indicator.key, version=head.version,
            change="new" if head.version == 1 else "grew", tenants=tenants, joined=joins,
            first_seen=head.first_seen, last_seen=head.last_seen,
            alert_count=head.alert_count, severities=dict(head.severities)).to_message()

    def listed(reaches: list[TenantReach], names: bool) -> list[dict[str, Any]]:
        """Each tenant with its name and alert count (the email shows both), or only its
        id when the event must be cut."""
        return [{"id": r.tenant_id, "name": r.tenant_name[:100], "alerts": r.alert_count}
                if names else {"id": r.tenant_id, "name": ""} for r in reaches]

    text = made(listed(window, True), listed(joined, True))
    if len(text.encode()) <= MAX_EVENT_BYTES:
        return text
    log.warning("cluster %s of %d tenants: event without names", head.indicator.key,
                len(window))
    tenants, joins = listed(window, False), listed(joined, False)
    while len((text := made(tenants, joins)).encode()) > MAX_EVENT_BYTES:
        tenants, joins = tenants[:len(tenants) * 9 // 10], joins[:len(joins) * 9 // 10]
    return text
