"""Correlation on the in-memory fakes: alerts of both schemas sharing an indicator make one
cluster and one event per version; redelivery indexes nothing twice; suppression, the
noise floor and private addresses form no cluster; a worker killed before any write, and
two workers racing on one indicator, change nothing consumers (deduping on event_id), the
list or the lookup see."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.config import CorrelationSettings
from shared.correlation.indicators import parse_indicator
from shared.correlation.model import SHA256, Indicator
from shared.correlation.service import Correlation
from shared.ingest.events import build_event
from shared.messages import AlertEvent, ClusterEvent
from shared.storage.correlation import Head
from shared.storage.memory.correlation import MemoryCorrelation
from shared.storage.memory.ingest import MemoryQueue
from shared.storage.queues import EventQueue
from tests import alert_docs

TENANTS = [f"{n}{n}{n}{n}{n}{n}{n}{n}-0000-0000-0000-00000000000{n}" for n in range(1, 8)]
SHARED = "c" * 64
HASH = Indicator(SHA256, SHARED)


class Killed(BaseException):
    """The worker died (not an Exception: nothing catches it)."""


class Countdown:
    """Kills the worker at the n-th write (storage write or queue send) from now."""

    def __init__(self) -> None:
        self.left: int | None = None
        self.writes = 0

    def tick(self) -> None:
        self.writes += 1
        if self.left is not None:
            self.left -= 1
            if self.left < 0:
                self.left = None
                raise Killed()


class KillableStore(MemoryCorrelation):
    def __init__(self, countdown: Countdown) -> None:
        super().__init__()
        self.countdown = countdown

    def _transact(self, pk, ops):  # type: ignore[no-untyped-def]
        self.countdown.tick()
        return super()._transact(pk, ops)

    def _put(self, table, entity):  # type: ignore[no-untyped-def]
        self.countdown.tick()
        super()._put(table, entity)

    def _delete(self, table, pk, rk):  # type: ignore[no-untyped-def]
        self.countdown.tick()
        super()._delete(table, pk, rk)


class KillableQueue(MemoryQueue):
    def __init__(self, countdown: Countdown) -> None:
        super().__init__()
        self.countdown = countdown

    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        self.countdown.tick()
        super().send_message(content, visibility_timeout)

    def events(self) -> list[ClusterEvent]:
        return [ClusterEvent.parse(t) for t in self.texts()]


class World:
    def __init__(self, active: int = 4, workers: int = 1, **settings: Any) -> None:
        self.countdown = Countdown()
        self.store = KillableStore(self.countdown)
        self.notify, self.siem = KillableQueue(self.countdown), KillableQueue(self.countdown)
        self.stored: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self.reads = 0
        self.active = active
        self.service = Correlation(self.store, EventQueue(self.notify), EventQueue(self.siem),
                                   CorrelationSettings(**settings), lambda: self.active,
                                   self._read, workers=workers)

    def _read(self, tenant_id: str, alert_id: str) -> tuple[dict[str, Any], str] | None:
        self.reads += 1
        return self.stored.get((tenant_id, alert_id))

    def event(self, n: int, *, schema: str | None = None, evidence: list[Any] | None = None,
              alert_id: str | None = None, created: str | None = None) -> AlertEvent:
        """Tenant n's alert: the shared hash, a public IP of its own, a private IP that
        every tenant has; odd tenants read through Graph."""
        schema = schema or ("mde" if n % 2 else "graph")
        tenant = TENANTS[n]
        day = created or f"2026-12-0{1 + n % 5}T10:00:00Z"
        aid = alert_id or f"da{n}"
        if schema == "mde":
            doc = alert_docs.mde_alert(id=aid, aadTenantId=tenant, alertCreationTime=day,
                                       lastUpdateTime=day, severity="High")
            doc["evidence"] = evidence if evidence is not None else [
                {"entityType": "File", "fileName": "x.exe", "sha256": SHARED.upper()},
                {"entityType": "Ip", "ipAddress": f"185.220.101.{n}"},
                {"entityType": "Ip", "ipAddress": "10.0.0.1"}]
        else:
            doc = alert_docs.graph_alert(id=aid, tenantId=tenant, createdDateTime=day,
                                         lastUpdateDateTime=day, severity="medium")
            doc["evidence"] = evidence if evidence is not None else [
                {"@odata.type": "#microsoft.graph.security.fileEvidence",
                 "fileDetails": {"fileName": "x.exe", "sha256": SHARED}},
                {"@odata.type": "#microsoft.graph.security.ipEvidence",
                 "ipAddress": f"185.220.101.{n}"},
                {"@odata.type": "#microsoft.graph.security.ipEvidence",
                 "ipAddress": "10.0.0.1"}]
        self.stored[(tenant, aid)] = (doc, schema)
        return build_event(tenant, f"Tenant {n} <b>", doc, day, None, [], schema=schema)

    def events(self) -> list[ClusterEvent]:
        return self.notify.events()

    def snapshot(self) -> tuple[Any, ...]:
        rows = {t: {k: v[0] for k, v in r.items()} for t, r in self.store.rows.items()}
        return rows, sorted({e.event_id for e in self.events()})


@pytest.mark.parametrize("workers", [1, 8])
def test_four_tenants_of_both_schemas_one_cluster_three_events(workers: int):
    w = World(workers=workers)
    done = w.service.index([w.event(n) for n in range(4)])
    assert (done.alerts, done.sightings, done.versions) == (4, 8, 3)  # hash + own IP each
    events = w.events()
    assert [(e.version, e.change, [j["id"] for j in e.joined]) for e in events] == [
        (1, "new", TENANTS[:2]), (2, "grew", [TENANTS[2]]), (3, "grew", [TENANTS[3]])]
    assert w.siem.texts() == w.notify.texts()
    assert all(e.key == HASH.key and e.indicator == SHARED for e in events)
    assert events[-1].tenants[0] == {"id": TENANTS[0], "name": "Tenant 0 <b>", "alerts": 1}
    assert events[-1].severities == {"Medium": 2, "High": 2}
    clusters, cursor = w.service.clusters()
    assert [c.indicator for c in clusters] == [HASH] and cursor is None
    cluster = w.service.cluster(HASH)
    assert cluster is not None and cluster.reach == 4 and cluster.version == 3
    assert cluster.alert_count == 4 and cluster.tenants[3].alert_ids == ["da3"]
    assert w.service.cluster(Indicator("ip", "185.220.101.1")) is None
    assert w.service.cluster(Indicator("ip", "10.0.0.1")) is None
    assert w.service.lookup(Indicator("ip", "10.0.0.1")) == ([], None)  # private: ignored
    found, _ = w.service.lookup(parse_indicator(SHARED.upper()))
    assert [s.tenant_id for s in found] == TENANTS[3::-1]
    assert w.reads == 0  # summaries were whole
    with pytest.raises(ValueError):
        w.service.lookup(HASH, since="yesterday")
    assert len(w.service.lookup(HASH, since="2026-12-04T00:00:00Z")[0]) == 1


def test_redelivered_events_index_nothing_twice():
    w = World()
    events = [w.event(n) for n in range(4)]
    w.service.index(events)
    before = w.snapshot()
    sent = len(w.notify.texts())
    again = w.service.index([*events, w.event(2, alert_id="da2")])
    assert (again.sightings, again.versions, again.sent) == (0, 0, 0)
    assert again.repeated == 10
    assert w.snapshot() == before and len(w.notify.texts()) == sent
    # in a fresh process (which writes unknown indicators blind): the same
    fresh = Correlation(w.store, EventQueue(w.notify), EventQueue(w.siem),
                        CorrelationSettings(), lambda: 4)
    again = fresh.index(events)
    assert (again.sightings, again.versions, again.repeated) == (0, 0, 8)
    assert w.snapshot() == before and len(w.notify.texts()) == sent
    # another version of an alert is the same sighting
    later = w.event(1)
    later.alert["lastUpdateTime"] = "2026-12-09T00:00:00Z"
    assert w.service.index([later]).sightings == 0


def test_a_fifth_tenant_makes_one_more_event():
    w = World(active=5)
    w.service.index([w.event(n) for n in range(4)])
    w.service.index([w.event(4)])
    events = w.events()
    assert len(events) == 4
    assert (events[-1].version, events[-1].change, events[-1].joined) == (
        4, "grew", [{"id": TENANTS[4], "name": "Tenant 4 <b>", "alerts": 1}])
    assert len(events[-1].tenants) == 5
    # a second alert of a tenant already in the cluster: no event
    w.service.index([w.event(4, alert_id="other")])
    assert len(w.events()) == 4
    assert w.service.cluster(HASH).alert_count == 6
    assert w.service.clusters()[0][0].alert_count == 6  # the list too, same keys


def test_a_suppressed_indicator_forms_no_cluster_but_is_looked_up():
    w = World()
    w.service.suppress(HASH, "our own EDR", "ann@mssp.example")
    w.service.index([w.event(n) for n in range(4)])
    assert w.events() == [] and w.service.clusters() == ([], None)
    assert w.service.cluster(HASH) is None
    assert len(w.service.lookup(HASH)[0]) == 4
    assert w.service.unsuppress(HASH, "bob@mssp.example") is True
    assert w.service.unsuppress(HASH, "bob@mssp.example") is False
    assert [(r["author"], r["removed_by"]) for r in w.service.removals()] == [
        ("ann@mssp.example", "bob@mssp.example")]
    w.service.index([w.event(4)])  # the next sighting makes it a cluster
    assert [(e.version, e.change, len(e.tenants)) for e in w.events()] == [(1, "new", 5)]


def test_suppressing_a_listed_cluster_hides_it():
    w = World()
    w.service.index([w.event(n) for n in range(2)])
    assert len(w.service.clusters()[0]) == 1
    w.service.suppress(HASH, "benign", "ann")
    assert w.service.clusters()[0] == [] and w.service.cluster(HASH) is None
    assert [s.reason for s in w.service.suppressions()] == ["benign"]


def test_the_noise_floor():
    w = World(active=10)
    w.service.index([w.event(n) for n in range(7)])  # 6 > 0.5 * 10 at the sixth
    assert [e.version for e in w.events()] == [1, 2, 3, 4]  # at 2, 3, 4, 5 tenants
    assert w.service.clusters() == ([], None) and w.service.cluster(HASH) is None
    assert w.store.state(HASH).head.quiet == "floor"
    # under CORRELATION_FLOOR_MIN_TENANTS active tenants, no floor
    small = World(active=7, floor_min_tenants=10)
    small.service.index([small.event(n) for n in range(7)])
    assert len(small.events()) == 6


def test_min_tenants_and_window():
    w = World(min_tenants=3, window_days=2)
    w.service.index([w.event(0, created="2026-12-01T10:00:00Z"),
                     w.event(1, created="2026-12-02T10:00:00Z")])
    assert w.events() == []
    w.service.index([w.event(2, created="2026-12-05T10:00:00Z")])  # the others too old
    assert w.events() == []
    w.service.index([w.event(3, created="2026-12-06T10:00:00Z"),
                     w.event(4, created="2026-12-06T11:00:00Z")])
    assert [[j["id"] for j in e.joined] for e in w.events()] == [TENANTS[2:5]]


def test_a_cut_summary_reads_the_stored_alert():
    w = World()
    items = [{"entityType": "File", "fileName": f"f{i}", "sha256": f"{i:064x}"}
             for i in range(24)]
    items.append({"entityType": "File", "fileName": "x.exe", "sha256": SHARED})
    event = w.event(1, schema="mde", evidence=items)
    assert len(event.alert["evidence"]) == 20
    w.service.index([event, w.event(2)])
    assert w.reads == 1 and len(w.events()) == 1
    long_url = "http://evil.example/" + "a" * 700
    cut = w.event(3, schema="mde", evidence=[{"entityType": "Url", "url": long_url}])
    w.service.index([cut])
    assert w.reads == 2 and len(w.service.lookup(Indicator("url", long_url))[0]) == 1


def test_alert_indicators_count_other_tenants():
    w = World()
    w.service.index([w.event(n) for n in range(3)])
    found = dict(w.service.alert_indicators(TENANTS[0], "da0"))
    assert found[HASH] == 2 and found[Indicator("ip", "185.220.101.0")] == 0
    assert w.service.alert_indicators(TENANTS[0], "missing") == []


def test_clusters_paged_in_both_orders():
    w = World()
    for k in range(3):  # indicator k in k + 2 tenants, newer as k grows
        ev = [w.event(n, alert_id=f"a{k}", created=f"2026-12-0{k + 1}T10:00:00Z",
                      schema="mde", evidence=[{"entityType": "File", "sha1": f"{k:040x}"}])
              for n in range(k + 2)]
        w.service.index(ev)
    page, cursor = w.service.clusters("recent", limit=2)
    assert [c.indicator.value[-1] for c in page] == ["2", "1"] and cursor
    rest, end = w.service.clusters("recent", cursor=cursor, limit=2)
    assert [c.indicator.value[-1] for c in rest] == ["0"] and end is None
    assert [c.reach for c in w.service.clusters("reach")[0]] == [4, 3, 2]
    with pytest.raises(ValueError):
        w.service.clusters("reach", cursor="<script>")


def _baseline() -> tuple[Any, ...]:
    w = World()
    w.service.index([w.event(n) for n in range(3)])
    w.service.index([w.event(3), w.event(4)])
    return w.snapshot()


def test_a_kill_at_every_write_then_redelivery_changes_nothing_seen():
    expected = _baseline()
    probe = World()
    probe.service.index([probe.event(n) for n in range(3)])
    start = probe.countdown.writes
    probe.service.index([probe.event(3), probe.event(4)])
    writes = probe.countdown.writes - start
    assert writes > 10
    for k in range(writes):
        w = World()
        w.service.index([w.event(n) for n in range(3)])
        batch = [w.event(3), w.event(4)]
        w.countdown.left = k
        with pytest.raises(Killed):
            w.service.index(copy.deepcopy(batch))
        w.service.index(batch)  # the redelivery
        rows, ids = w.snapshot()
        assert (rows, ids) == expected, f"killed at write {k}"
        assert len(w.events()) >= len(ids)


def test_two_workers_on_one_indicator_lose_no_tenant():
    w = World(workers=2)  # the other worker's index runs inside this one's
    w.service.index([w.event(0)])
    other = w.event(1)
    store = w.store
    original = store.record
    raced = []

    def record(sighting, reach, head: Head, etag, event=None):  # type: ignore[no-untyped-def]
        if not raced and sighting.tenant_id == TENANTS[2]:
            raced.append(1)
            w.service.index([other])  # the other worker commits first
        return original(sighting, reach, head, etag, event)

    store.record = record  # type: ignore[method-assign]
    w.service.index([w.event(2)])
    assert raced
    cluster = w.service.cluster(HASH)
    assert cluster is not None and {t.tenant_id for t in cluster.tenants} == set(TENANTS[:3])
    assert [e.version for e in w.events()] == [1, 2]


def test_backfill_indexes_stored_alerts_resumably_and_silently():
    from shared.correlation.backfill import backfill, silent
    from shared.storage.alert_rows import alert_rows
    from shared.storage.memory.ingest import MemoryAlerts

    w = World()
    alerts = MemoryAlerts()
    for n in range(4):
        for k in range(3):
            w.event(n, alert_id=f"old{k}")
            doc, schema = w.stored[(TENANTS[n], f"old{k}")]
            alerts.store(list(alert_rows(TENANTS[n], doc, schema=schema)))
    quiet = Correlation(w.store, silent(), silent(), CorrelationSettings(), lambda: 4,
                        alerts.alert_and_schema)
    tenants = [(t, f"Tenant {n}") for n, t in enumerate(TENANTS[:4])]
    w.countdown.left = 20
    with pytest.raises(Killed):
        backfill(quiet, w.store, alerts, tenants, batch_rows=2)
    backfill(quiet, w.store, alerts, tenants, batch_rows=2)  # resumed
    again = backfill(quiet, w.store, alerts, tenants, batch_rows=2)
    assert again.alerts == 0  # done: nothing read again
    cluster = w.service.cluster(HASH)
    assert cluster is not None and cluster.reach == 4 and cluster.alert_count == 12
    assert len(w.service.lookup(HASH)[0]) == 12
    assert w.events() == []  # nothing sent about history
    w.service.index([w.event(4)])  # the next live alert: one event, version 4
    assert [(e.version, e.change) for e in w.events()] == [(4, "grew")]


def test_the_service_is_the_reads_the_portal_codes_against():
    import inspect

    from shared.correlation.reads import CorrelationReads

    for name, method in inspect.getmembers(CorrelationReads, inspect.isfunction):
        if not name.startswith("_"):
            assert inspect.signature(method) == inspect.signature(getattr(Correlation, name))


def test_an_event_of_a_huge_cluster_fits_a_queue_message():
    from shared.correlation.model import TenantReach
    from shared.correlation.service import MAX_EVENT_BYTES, _event_text

    reaches = [TenantReach(f"{n:08d}-0000-0000-0000-000000000000", "N" * 300,
                           "2026-12-01T00:00:00.0000000Z", "2026-12-01T00:00:00.0000000Z")
               for n in range(1000)]
    head = Head(HASH, version=7, first_seen="2026-12-01T00:00:00.0000000Z",
                last_seen="2026-12-01T00:00:00.0000000Z", alert_count=1000)
    small = ClusterEvent.parse(_event_text(head, reaches[:50], reaches[49:50]))
    assert small.tenants[0]["name"] == "N" * 100 and len(small.tenants) == 50
    text = _event_text(head, reaches, reaches[-300:])
    event = ClusterEvent.parse(text)
    assert len(text.encode()) <= MAX_EVENT_BYTES and event.version == 7
    assert 500 < len(event.tenants) < 1000 and event.tenants[0]["name"] == ""
