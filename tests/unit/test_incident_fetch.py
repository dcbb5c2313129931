"""Incidents of graph tenants on the in-memory fakes: the chain stored once whatever the
paging, one event per incident version, a kill before any commit or between a send and
its outbox row's drop changing nothing that consumers (deduping on event_id) or the list
see; the idle cost; the budget; and a run of the Ingestor that fetches them after alerts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import timefmt
from shared.ingest.incident_fetch import IncidentFetch, parse
from shared.ingest.incident_relay import IncidentRelay
from shared.ingest.worker import Ingestor, IngestStores
from shared.messages import FetchRequest, IncidentEvent
from shared.microsoft.defender import DefenderError
from shared.microsoft.graph_security import Page
from shared.model import Tenant
from shared.storage.errors import StateChanged
from shared.storage.ingest_state import ConflictError
from shared.storage.memory.incidents import MemoryIncidents
from shared.storage.queues import FetchQueue, RelayQueue
from tests.unit.test_graph_fetch import FakeGraph, GraphWorld

TENANT = Tenant("11111111-1111-1111-1111-111111111111", "Contoso <script>")
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


class IncidentGraph(FakeGraph):
    """A FakeGraph whose store is incidents, served at `incidents` (token-<tenant>)."""

    @contextlib.contextmanager
    def incidents(self, token: str, *, since: str | None = None, top: int = 50,
                  link: str = "") -> Iterator[Page]:
        with self.alerts(token, since=since, top=top, link=link) as page:
            yield page


def incident(n: int, updated: datetime, severity: str = "medium", **fields: Any
             ) -> dict[str, Any]:
    stamp = timefmt.from_datetime(updated)
    return {"id": str(1000 + n), "displayName": f"Incident {n}", "severity": severity,
            "status": "active", "assignedTo": None, "classification": "unknown",
            "determination": "unknown", "customTags": ["vip"], "systemTags": [],
            "createdDateTime": stamp, "lastUpdateDateTime": stamp,
            "incidentWebUrl": f"https://security.microsoft.com/incidents/{1000 + n}",
            "alerts": [{"id": f"ga{n}-a"}, {"id": f"ga{n}-b"}], **fields}


class Budget:
    def __init__(self, calls: int = 10_000) -> None:
        self.left = calls

    def wait_seconds(self) -> int:
        return 0 if self.left > 0 else 30

    def spend(self) -> None:
        self.left -= 1


class Queue:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def send(self, text: str) -> None:
        self.texts.append(text)

    def events(self) -> list[IncidentEvent]:
        return [IncidentEvent.parse(t) for t in self.texts]


class World:
    def __init__(self, max_pages: int = 100) -> None:
        self.graph, self.repo, self.queue = IncidentGraph(), MemoryIncidents(), Queue()
        self.fetch = IncidentFetch(self.repo, 7, 300, max_pages)
        self.relay = IncidentRelay(self.repo, [self.queue])  # type: ignore[list-item]
        self.secured = 0

    def add(self, count: int, start: int = 0, step: timedelta = timedelta(seconds=1),
            **fields: Any) -> None:
        for n in range(start, start + count):
            self.graph.put(TENANT.tenant_id, incident(n, NOW + n * step, **fields))

    def run(self, budget: Budget | None = None) -> tuple[bool, dict[str, int]]:
        counts: dict[str, int] = {}
        try:
            return self.fetch.run(self.graph, TENANT,  # type: ignore[arg-type]
                                  lambda fresh: f"token-{TENANT.tenant_id}",
                                  budget or Budget(), counts, self._secure), counts
        finally:
            self.relay.drain(TENANT.tenant_id)

    def _secure(self) -> None:
        self.secured += 1

    def unique(self) -> dict[str, IncidentEvent]:
        return {e.event_id: e for e in self.queue.events()}


def test_chain_stored_once_one_event_each_then_idle_costs_one_call():
    world = World()
    world.add(120, step=timedelta(minutes=1))
    done, counts = world.run()
    assert done and counts["new"] == 120 and counts["calls"] == 3  # 50 a page
    events = world.queue.events()
    assert len(events) == 120 and {e.change for e in events} == {"new"}
    assert events[0].tenant_name == "Contoso <script>"
    first = next(e for e in events if e.incident_id == "1000")
    assert first.incident["alertIds"] == ["ga0-a", "ga0-b"]
    assert first.incident["severity"] == "medium" and first.changed == {}
    assert len(world.repo.listed(limit=500).items) == 120
    stored = world.repo.get(TENANT.tenant_id, "1007")
    assert stored is not None and stored.alert_ids == ("ga7-a", "ga7-b")
    assert stored.tags == ("vip",) and stored.web_url.endswith("/1007")
    assert world.repo.outbox(TENANT.tenant_id) == []
    world.graph.calls.clear()
    done, counts = world.run()
    assert done and counts["calls"] == 1 and counts.get("new", 0) == 0
    assert len(world.queue.texts) == 120  # the overlap re-read made no event


def test_severity_rising_is_one_updated_event_and_one_list_entry():
    world = World()
    world.add(3)
    world.run()
    world.graph.put(TENANT.tenant_id, incident(1, NOW + timedelta(minutes=30),
                                               severity="high"))
    world.run()
    world.run()
    updated = [e for e in world.queue.events() if e.change == "updated"]
    assert len(updated) == 1
    assert updated[0].changed == {"severity": ["medium", "high"]}
    assert updated[0].previous == timefmt.normalize(
        timefmt.from_datetime(NOW + timedelta(seconds=1)))
    listed = world.repo.listed(limit=10).items
    assert [x.incident_id for x in listed].count("1001") == 1
    assert listed[0].incident_id == "1001" and listed[0].severity == "high"


@pytest.mark.parametrize("page_at", [0, 1, 2])
def test_killed_commit_then_rerun_stores_each_version_once(page_at):
    world = World()
    world.add(140)
    commits = {"n": 0}
    real = world.repo._transact

    def dying(pk, ops):
        commits["n"] += 1
        if commits["n"] == 2 + page_at:
            raise SystemExit("killed before the commit")
        return real(pk, ops)

    world.repo._transact = dying  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        world.run()
    world.repo._transact = real  # type: ignore[method-assign]
    done, _ = world.run()
    assert done
    events = world.queue.events()
    assert len(events) == len({e.event_id for e in events}) == 140
    assert len(world.repo.listed(limit=500).items) == 140


def test_drain_killed_between_send_and_drop_resends_the_same_event():
    world = World()
    world.add(2)
    world.repo.faults.fail_next("delete", SystemExit("killed after the send"))
    with pytest.raises(SystemExit):
        world.run()
    world.run()
    events = world.queue.events()
    assert len(events) == 3 and len(world.unique()) == 2  # consumers dedupe on event_id
    assert len(world.repo.listed(limit=10).items) == 2
    assert world.repo.outbox(TENANT.tenant_id) == []


def test_expired_link_mid_chain_reads_again_storing_nothing_twice():
    world = World()
    world.add(130)
    armed = [True]

    def expire_once(offset: int) -> None:
        if offset == 50 and armed:
            armed.pop()
            world.graph.expire = True

    world.graph.on_page.append(expire_once)
    done, _ = world.run()
    assert sum(1 for c in world.graph.calls if c.startswith("query")) == 2
    assert done and len(world.queue.texts) == 130 == len(world.unique())


def test_budget_stops_the_chain_at_a_checkpoint_and_the_next_run_goes_on():
    world = World()
    world.add(120)
    done, counts = world.run(Budget(1))
    assert not done and counts["calls"] == 1
    cursor = world.repo.cursor(TENANT.tenant_id)[0]
    assert cursor is not None and cursor.link  # the page it stopped at
    done, _ = world.run()
    assert done and len(world.unique()) == 120 == len(world.queue.texts)


def test_page_limit_stops_like_the_budget():
    world = World(max_pages=1)
    world.add(60)
    assert not world.run()[0]
    assert world.run()[0] and len(world.unique()) == 60


def test_another_run_moving_the_cursor_is_a_conflict_and_commits_nothing():
    world = World()
    world.add(3)
    real = world.repo._transact

    def raced(pk, ops):
        raise StateChanged("moved")

    world.repo._transact = raced  # type: ignore[method-assign]
    with pytest.raises(ConflictError):
        world.run()
    world.repo._transact = real  # type: ignore[method-assign]
    assert world.queue.texts == [] and world.repo.get(TENANT.tenant_id, "1000") is None


@pytest.mark.parametrize("doc", [{"id": "a/b", "lastUpdateDateTime": "2026-12-01T00:00:00Z"},
                                 {"id": "1", "lastUpdateDateTime": "yesterday"},
                                 {"id": "1"}, ["not", "an", "object"]])
def test_malformed_incidents_are_refused(doc):
    with pytest.raises(DefenderError):
        parse(TENANT.tenant_id, doc)


def test_event_round_trip_and_fits_a_queue_message():
    huge = incident(1, NOW, displayName="<img src=x onerror=alert(1)>" * 2000,
                    alerts=[{"id": f"ga{i:05d}"} for i in range(3000)])
    parsed = parse(TENANT.tenant_id, huge)
    from shared.ingest.incident_fetch import event_of
    event = event_of(TENANT, parsed, None)
    text = event.to_message()
    assert len(text.encode()) < 40_000
    assert IncidentEvent.parse(text) == event
    assert event.incident["alertCount"] == 3000


class IngestGraph(IncidentGraph):
    """Alerts at `alerts` (the FakeGraph store), incidents at `incidents` (their own)."""

    def __init__(self) -> None:
        super().__init__()
        self.incident_store = IncidentGraph()

    @contextlib.contextmanager
    def incidents(self, token: str, *, since: str | None = None, top: int = 50,
                  link: str = "") -> Iterator[Page]:
        self.calls.append("incidents")
        with self.incident_store.alerts(token, since=since, top=top, link=link) as page:
            yield page


def _ingest_world() -> tuple[GraphWorld, IngestGraph, MemoryIncidents, Queue]:
    world = GraphWorld()
    graph = IngestGraph()
    repo, queue = MemoryIncidents(), Queue()
    world.graph = graph
    world.ingestor = Ingestor(world.settings, world.tokens, world.defender, IngestStores(
        tenants=world.tenants, alerts=world.alerts, states=world.states, runs=world.runs,
        app_health=world.app_health, fetch_queue=FetchQueue(world.fetch_queue),
        relay_queue=RelayQueue(world.relay_queue), notices=world.ingestor.notices,
        incidents=repo, incident_relay=IncidentRelay(repo, [queue])),  # type: ignore[list-item]
        graph=graph)  # type: ignore[arg-type]
    return world, graph, repo, queue


def test_the_ingestor_fetches_incidents_after_alerts_within_its_budget():
    world, graph, _repo, queue = _ingest_world()
    world.add_graph(3)
    tid = world.tenant.tenant_id
    for n in range(3):
        graph.incident_store.put(tid, incident(n, world.now + timedelta(seconds=n)))
    record = world.ingestor.run(FetchRequest(tid))
    assert record.outcome == "success"
    assert graph.calls[-1] == "incidents" and record.api_calls == 2
    assert len(queue.events()) == 3 and {e.tenant_id for e in queue.events()} == {tid}
    record = world.ingestor.run(FetchRequest(tid))
    assert record.api_calls == 2 and len(queue.texts) == 3  # idle: one call each
    assert json.loads(queue.texts[0])["type"] == "incident"


def test_a_drain_killed_in_a_run_is_finished_by_the_next_run_of_the_tenant():
    world, graph, repo, queue = _ingest_world()
    tid = world.tenant.tenant_id
    for n in range(3):
        graph.incident_store.put(tid, incident(n, world.now + timedelta(seconds=n)))
    real = queue.send
    sent = {"n": 0}

    def dying(text: str) -> None:
        sent["n"] += 1
        if sent["n"] == 2:
            raise SystemExit("killed mid-drain")
        real(text)

    queue.send = dying  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        world.ingestor.run(FetchRequest(tid))
    queue.send = real  # type: ignore[method-assign]
    assert len(queue.texts) == 1 and len(repo.outbox(tid)) == 2
    record = world.ingestor.run(FetchRequest(tid))
    assert record.outcome == "success" and repo.outbox(tid) == []
    assert len(queue.texts) == 3 == len({e.event_id for e in queue.events()})
    assert len(repo.listed(limit=10).items) == 3


def test_incidents_refused_leave_the_tenant_fetching_its_alerts():
    from shared.microsoft.graph_security import GraphConsentMissing
    world, graph, _repo, _queue = _ingest_world()
    tid = world.tenant.tenant_id
    world.add_graph(2)
    graph.incident_store.refuse.append(GraphConsentMissing("no incidents", 403, "",
                                                           False))
    record = world.ingestor.run(FetchRequest(tid))
    assert record.outcome == "success" and record.new == 2
    assert "SecurityIncident.Read.All" in record.error
    tenant = world.tenants.get(tid)
    assert tenant is not None and tenant.status == "active"
