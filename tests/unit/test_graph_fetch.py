"""The graph fetch's exactly-once logic on the in-memory fakes: a fake Graph alerts_v2 at
the edge (no order, pages by nextLink, links that expire), the repositories of
shared/storage/memory behind it, the relay after each run. Each test says which of the
graph cursor's promises it holds (docs/ingest.md, "Graph fetch")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from shared import timefmt
from shared.ingest import graph_cursor
from shared.ingest.worker import Ingestor, IngestStores
from shared.messages import FetchRequest
from shared.microsoft.defender import Throttled
from shared.microsoft.graph_security import ExpiredLink, GraphConsentMissing, Page
from shared.microsoft.identity import TokenError
from shared.model import Cursor, Tenant, TenantStatus
from shared.storage.queues import FetchQueue, RelayQueue
from tests.unit.test_ingestor import FakeTokens, World, _alert, _stamp

BASE = "https://graph.example"


class FakeGraph:
    """`GET /v1.0/security/alerts_v2` over a tenant's alerts: `lastUpdateDateTime ge`,
    `$top`, pages by nextLink in no particular order (a fixed scramble of the ids). A
    chain answers the alerts that matched its first query, each as it is when its page is
    read. `expire` makes the next nextLink call answer ExpiredLink."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, dict[str, Any]]] = {}
        self.chains: dict[str, list[str]] = {}
        self.refuse: list[Exception] = []
        self.expire = False
        self.calls: list[str] = []  # "query <since>" or the link followed
        self.on_page: list[Any] = []  # callables run before a page is answered

    def put(self, tenant_id: str, alert: dict[str, Any]) -> None:
        self.store.setdefault(tenant_id, {})[alert["id"]] = dict(alert)

    @contextlib.contextmanager
    def alerts(self, token: str, *, since: str | None = None, top: int = 1000,
               link: str = "") -> Iterator[Page]:
        self.calls.append(link or f"query {since}")
        if self.refuse:
            raise self.refuse.pop(0)
        tenant_id = token.removeprefix("token-")
        mine = self.store.get(tenant_id, {})
        if link:
            if self.expire:
                self.expire = False
                raise ExpiredLink("Graph refused the nextLink (410 )", 410, "", False)
            chain, offset = link.rsplit("/", 2)[-2:]
            ids, offset_n = self.chains[chain], int(offset)
        else:
            floor = timefmt.normalize(since or "1970-01-01T00:00:00Z")
            ids = sorted((i for i, a in mine.items()
                          if timefmt.normalize(a["lastUpdateDateTime"]) >= floor),
                         key=lambda i: hashlib.sha256(i.encode()).hexdigest())
            chain, offset_n = uuid.uuid4().hex, 0
            self.chains[chain] = ids
        for hook in self.on_page:
            hook(offset_n)
        chosen = [mine[i] for i in ids[offset_n:offset_n + top]]
        envelope: dict[str, Any] = {}
        if offset_n + top < len(ids):
            envelope["@odata.nextLink"] = f"{BASE}/next/{chain}/{offset_n + top}"
        yield Page(iter([(a, json.dumps(a).encode()) for a in chosen]), envelope)


class GraphTokens(FakeTokens):
    def __init__(self) -> None:
        super().__init__()
        self.scopes: list[str | None] = []

    def token(self, tenant_id: str, scope: str | None = None) -> str:
        self.scopes.append(scope)
        return super().token(tenant_id)


def graph_alert(n: int, updated, *, endpoint: bool = False, **fields: Any) -> dict[str, Any]:
    """A v2 alert; `endpoint`: Defender for Endpoint's, whose providerAlertId is the id
    `_alert(n)` has under mde."""
    stamp = _stamp(updated)
    return {"id": f"ga{n:06d}-{'e' if endpoint else 'o'}", "title": f"Alert {n}",
            "providerAlertId": f"da{n:06d}" if endpoint else f"p{n}",
            "serviceSource": "microsoftDefenderForEndpoint" if endpoint
            else "microsoftDefenderForOffice365",
            "severity": "high", "status": "new", "classification": None,
            "determination": None, "assignedTo": None, "createdDateTime": stamp,
            "lastUpdateDateTime": stamp, **fields}


class GraphWorld(World):
    def __init__(self, source: str = "graph", **settings: str) -> None:
        super().__init__(**settings)
        self.graph, self.tokens = FakeGraph(), GraphTokens()
        self.ingestor = Ingestor(self.settings, self.tokens, self.defender, IngestStores(
            tenants=self.tenants, alerts=self.alerts, states=self.states, runs=self.runs,
            app_health=self.app_health, fetch_queue=FetchQueue(self.fetch_queue),
            relay_queue=RelayQueue(self.relay_queue), notices=self.ingestor.notices),
            graph=self.graph)  # type: ignore[arg-type]
        self.tenants.merge(self.tenant.tenant_id, source=source)

    def add_graph(self, count: int, start: int = 0, at=None, **fields: Any) -> None:
        for n in range(start, start + count):
            when = at or self.now + timedelta(seconds=n)
            self.graph.put(self.tenant.tenant_id, graph_alert(n, when, **fields))

    def cursor(self) -> Cursor | None:
        return self.states.of(self.tenant.tenant_id).cursor()[0]

    def run_all(self) -> list[Any]:
        """Fetch, then every continuation the runs queue, until none is left."""
        runs = [self.fetch()]
        while self.fetch_queue.take():
            runs.append(self.fetch(continuation=True))
        self.relay_requested()
        return runs


@pytest.fixture
def world() -> GraphWorld:
    return GraphWorld(FETCH_PAGE_SIZE="3")


def _ids(events) -> list[str]:
    return sorted(e.alert_id for e in events)


def test_a_chain_of_pages_in_no_order_with_one_time_stores_each_alert_once(world):
    same_time = world.now
    world.add_graph(10, at=same_time)  # ten alerts sharing one lastUpdateDateTime
    run = world.fetch()
    assert (run.outcome, run.new, run.pages) == ("success", 10, 4)
    assert set(world.tokens.scopes) == {graph_cursor.SCOPE}
    world.relay_requested()
    events = world.events()
    assert _ids(events) == sorted(f"ga{n:06d}-o" for n in range(10))
    assert {(e.change, e.alert["schema"]) for e in events} == {("new", "graph")}
    assert {r.get("Schema") for r in world.stored().values()} == {"graph"}
    assert world.cursor() == Cursor(_stamp(same_time), source="graph")
    again = world.fetch()
    assert (again.new, again.changed, again.unchanged) == (0, 0, 10)
    world.relay_requested()
    assert len(world.events()) == 10


def test_the_watermark_moves_only_when_the_chain_ends():
    world = GraphWorld(FETCH_PAGE_SIZE="3", FETCH_MAX_PAGES_PER_RUN="2")
    world.add_graph(8)
    first = world.fetch()
    assert (first.outcome, first.new) == ("partial", 6)
    mid = world.cursor()
    assert mid.link.startswith(f"{BASE}/next/") and mid.watermark < _stamp(world.now)
    met = sorted(e["lastUpdateDateTime"] for e in world.graph.store[
        world.tenant.tenant_id].values() if e["id"] in {
        r["AlertId"] for r in world.stored().values()})
    assert mid.high == met[-1] and mid.started  # the latest version met, the start
    world.fetch_queue.take()
    rest = world.fetch(continuation=True)
    assert (rest.outcome, rest.new) == ("success", 2)
    assert world.graph.calls[-1] == mid.link  # resumed at the checkpointed nextLink
    done = world.cursor()
    assert (done.link, done.watermark) == ("", _stamp(world.now + timedelta(seconds=7)))
    world.relay_requested()
    assert len(world.events()) == len({e.event_id for e in world.events()}) == 8


def test_an_updated_alert_gives_one_event_per_version(world):
    world.add_graph(2)
    world.fetch()
    world.graph.put(world.tenant.tenant_id, graph_alert(
        0, world.now + timedelta(minutes=5), status="inProgress"))
    run = world.fetch()
    assert (run.new, run.changed) == (0, 1)
    world.relay_requested()
    updates = [e for e in world.events() if e.change == "updated"]
    assert [(e.alert_id, e.changed["status"]) for e in updates] == [
        ("ga000000-o", ["New", "InProgress"])]


def test_a_killed_run_resumes_at_its_checkpoint_and_repeats_nothing(world):
    world.add_graph(9)
    world.states.faults.fail_next("commit", SystemExit("killed"))  # the first commit
    with pytest.raises(SystemExit):
        world.fetch()
    assert world.cursor() is None
    world.relay_requested()
    assert world.events() == []
    runs = world.run_all()
    assert runs[-1].outcome == "success"
    events = world.events()
    assert _ids(events) == sorted(f"ga{n:06d}-o" for n in range(9))
    assert len({e.event_id for e in events}) == 9


def test_a_kill_between_two_pages_resumes_at_the_nextlink_of_the_last_commit(world):
    world.add_graph(9)
    pages = []
    world.graph.on_page.append(lambda offset: pages.append(offset))

    def die_on_third(offset: int) -> None:
        if offset == 6:
            raise SystemExit("killed on the third page")
    world.graph.on_page.append(die_on_third)
    with pytest.raises(SystemExit):
        world.fetch()
    checkpoint = world.cursor()
    assert checkpoint is not None and checkpoint.link.endswith("/3")  # page 2 committed
    world.graph.on_page.remove(die_on_third)
    runs = world.run_all()
    assert world.graph.calls[-2] == checkpoint.link
    assert sum(r.new for r in runs) == 3  # only the page it had not stored
    assert _ids(world.events()) == sorted(f"ga{n:06d}-o" for n in range(9))
    assert world.cursor().link == ""


def test_an_expired_nextlink_restarts_the_chain_from_the_watermark(world):
    world.add_graph(9)
    world.graph.expire = True  # the first nextLink the run follows
    run = world.fetch()
    assert run.outcome == "success"
    queries = [c for c in world.graph.calls if c.startswith("query")]
    assert len(queries) == 2  # the chain read again from its first query
    world.relay_requested()
    events = world.events()
    assert _ids(events) == sorted(f"ga{n:06d}-o" for n in range(9))
    assert len({e.event_id for e in events}) == 9


def test_an_expired_checkpoint_on_resume_loses_nothing():
    world = GraphWorld(FETCH_PAGE_SIZE="3", FETCH_MAX_PAGES_PER_RUN="1")
    world.add_graph(7)
    assert world.fetch().outcome == "partial"
    world.fetch_queue.take()
    world.graph.expire = True
    runs = [world.fetch(continuation=True)]
    while world.fetch_queue.take():
        runs.append(world.fetch(continuation=True))
    world.relay_requested()
    events = world.events()
    assert _ids(events) == sorted(f"ga{n:06d}-o" for n in range(7))
    assert len({e.event_id for e in events}) == 7


def test_an_alert_updated_while_the_chain_is_read_is_caught_by_the_next_run(world):
    """It moved to a page already read, so this chain misses its new version; the
    watermark stops at the chain's start, so the next chain finds it."""
    world.add_graph(8)
    world.add_graph(1, start=8, at=world.now + timedelta(hours=3))  # met late in the chain
    victims: list[str] = []

    def update_mid_chain(offset: int) -> None:
        if offset == 6 and not victims:  # an alert of the first page, updated now
            victim = world.graph.store[world.tenant.tenant_id][
                list(world.graph.chains.values())[-1][0]]
            victim["lastUpdateDateTime"] = timefmt.shift(world.cursor().started, 5)
            victim["status"] = "resolved"
            victims.append(victim["id"])
    world.graph.on_page.append(update_mid_chain)
    first = world.fetch()
    assert first.new == 9 and first.changed == 0  # its new version not met
    started = world.graph.calls and world.cursor()
    assert started.watermark < _stamp(world.now + timedelta(hours=3))  # not past the start
    second = world.fetch()
    assert second.changed == 1
    world.relay_requested()
    assert [(e.alert_id, e.changed["status"]) for e in world.events()
            if e.change == "updated"] == [(victims[0], ["New", "Resolved"])]


def test_an_idle_graph_run_writes_nothing_but_the_tenants_health(world, monkeypatch):
    world.add_graph(5)
    world.fetch()
    world.relay_requested()
    from tests.unit.test_idle_fetch import _fanned_out, _index_loads
    loads = _index_loads(monkeypatch)
    commits: list[int] = []
    real = type(world.states.of(world.tenant.tenant_id)).commit

    def counted(self, *args, **kwargs):
        commits.append(1)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(type(world.states.of(world.tenant.tenant_id)), "commit", counted)
    run = world.ingestor.run(_fanned_out(world))
    assert (run.outcome, run.new, run.changed, run.unchanged) == ("success", 0, 0, 5)
    assert loads == [] and commits == []


def test_throttling_requeues_the_fetch(world):
    world.add_graph(1)
    world.graph.refuse.append(Throttled(30))
    run = world.fetch()
    assert run.outcome == "throttled"
    assert world.tenants.get(world.tenant.tenant_id).throttled_until is not None
    assert len(world.fetch_queue.take()) == 1


def test_a_missing_graph_permission_is_its_own_reason(world):
    world.graph.refuse.append(GraphConsentMissing("Missing role", 403, "Forbidden", False))
    world.fetch()
    tenant = world.tenants.get(world.tenant.tenant_id)
    assert (tenant.status, tenant.status_reason) == (TenantStatus.CONSENT_REVOKED,
                                                     "graph_consent_missing")


def test_consent_missing_for_the_graph_token_is_its_own_reason(world):
    world.tokens.refuse.append(TokenError("AADSTS65001: no consent", 65001,
                                          TenantStatus.CONSENT_REVOKED, "consent_missing"))
    world.fetch()
    tenant = world.tenants.get(world.tenant.tenant_id)
    assert (tenant.status, tenant.status_reason) == (TenantStatus.CONSENT_REVOKED,
                                                     "graph_consent_missing")


def test_a_tenant_moved_from_mde_loses_and_repeats_no_alert():
    """Endpoint alerts fetched under mde come again from Graph (same id as
    providerAlertId, lastUpdateDateTime as Defender's): no second "new" event; a later
    change is one "updated" event; other products' alerts are new."""
    world = GraphWorld(source="mde", FETCH_PAGE_SIZE="3")
    for n in range(6):
        world.defender.put(world.tenant.tenant_id, _alert(n, world.now + timedelta(seconds=n)))
    assert world.fetch().new == 6
    world.relay_requested()
    mde_cursor = world.cursor()
    world.tenants.merge(world.tenant.tenant_id, source="graph")
    for n in range(6):  # the same endpoint alerts, as Graph has them
        world.graph.put(world.tenant.tenant_id, graph_alert(
            n, world.now + timedelta(seconds=n), endpoint=True))
    world.graph.put(world.tenant.tenant_id, graph_alert(
        3, world.now + timedelta(minutes=10), endpoint=True, status="resolved"))
    world.graph.put(world.tenant.tenant_id, graph_alert(
        100, world.now + timedelta(minutes=11)))  # Defender for Office 365
    world.graph.put(world.tenant.tenant_id, graph_alert(
        6, world.now + timedelta(minutes=12), endpoint=True))  # new since the move
    runs = world.run_all()
    assert world.graph.calls[0] == "query " + timefmt.shift(
        mde_cursor.watermark,
        -graph_cursor.HANDOVER_SECONDS - world.settings.fetch.overlap_seconds)
    assert (sum(r.new for r in runs), sum(r.changed for r in runs)) == (2, 1)
    events = world.events()
    assert len(events) == len({e.event_id for e in events}) == 6 + 3
    news = [e.alert_id for e in events if e.change == "new"]
    assert sorted(news) == sorted([f"da{n:06d}" for n in range(7)] + ["ga000100-o"])
    assert [(e.alert_id, e.changed["status"]) for e in events if e.change == "updated"
            ] == [("da000003", ["New", "Resolved"])]
    stored = world.stored()
    assert len(stored) == 8 and stored["da000003"]["Schema"] == "graph"
    assert world.cursor().source == "graph"


def test_a_graph_tenant_without_a_graph_client_fails_loudly():
    world = GraphWorld()
    world.ingestor.graph = None
    world.add_graph(1)
    with pytest.raises(RuntimeError):
        world.fetch()
    assert world.tenants.get(world.tenant.tenant_id).consecutive_failures == 1


def test_the_tenant_snapshot_carries_the_source():
    from shared.ingest.fanout import seen
    from shared.ingest.hold import seen_tenant
    tenant = Tenant(str(uuid.uuid4()), "Contoso", source="graph")
    tenant.etag = "W/1"
    request = FetchRequest(tenant.tenant_id, seen=seen(tenant))
    parsed = FetchRequest.parse(request.to_message())
    assert seen_tenant(parsed).source == "graph"
    plain = FetchRequest(tenant.tenant_id, seen=seen(Tenant(tenant.tenant_id, "C")))
    assert "source" not in plain.to_message()


def test_a_spent_budget_mid_chain_defers_at_the_next_page(monkeypatch):
    from shared.ingest import worker
    monkeypatch.setattr(worker, "BUDGET_PER_MINUTE", 2)
    world = GraphWorld(FETCH_PAGE_SIZE="3")
    world.add_graph(9)
    first = world.fetch()
    assert (first.outcome, first.api_calls, first.new) == ("deferred", 2, 6)
    checkpoint = world.cursor()
    assert checkpoint.link.endswith("/6")  # the page it had not read yet
    monkeypatch.setattr(worker, "BUDGET_PER_MINUTE", 90)
    assert world.fetch_queue.take()
    rest = world.fetch(continuation=True)
    assert (rest.outcome, rest.new) == ("success", 3)
    assert world.graph.calls[-1] == checkpoint.link
    world.relay_requested()
    assert len(world.events()) == len({e.event_id for e in world.events()}) == 9


# the cursor's rules, one by one ----------------------------------------------------------
T0 = "2026-03-01T10:00:00.0000000Z"


def test_a_new_tenant_starts_at_the_lookback_and_an_mde_cursor_is_handed_over():
    fresh = graph_cursor.start(None, T0, 7, 300)
    assert (fresh.watermark, fresh.source, fresh.started) == (
        "2026-02-22T10:00:00.0000000Z", "graph", T0)
    handed = graph_cursor.start(Cursor(T0, 4), "2026-03-01T11:00:00.0000000Z", 7, 300)
    assert (handed.watermark, handed.skip, handed.source) == (
        timefmt.shift(T0, -graph_cursor.HANDOVER_SECONDS), 0, "graph")
    assert graph_cursor.since(handed, 300) == timefmt.shift(handed.watermark, -300)


def test_a_checkpoint_is_resumed_as_it_is_and_a_chain_at_rest_starts_anew():
    checkpoint = Cursor(T0, source="graph", link=f"{BASE}/next/c/6", high=T0, started=T0)
    assert graph_cursor.start(checkpoint, "2026-03-02T00:00:00.0000000Z", 7, 300) \
        == checkpoint
    assert graph_cursor.since(checkpoint, 300) == ""  # the link is followed instead
    rest = graph_cursor.start(Cursor(T0, source="graph"), "2026-03-02T00:00:00.0000000Z",
                              7, 300)
    assert (rest.link, rest.high, rest.started) == ("", "", "2026-03-02T00:00:00.0000000Z")
    assert graph_cursor.restarted(checkpoint) == Cursor(T0, source="graph", high=T0,
                                                        started=T0)


@pytest.mark.parametrize("high,started,expected", [
    ("", T0, "2026-03-01T09:00:00.0000000Z"),  # nothing met: where it was
    ("2026-03-01T09:30:00.0000000Z", T0, "2026-03-01T09:30:00.0000000Z"),
    ("2026-03-01T12:00:00.0000000Z", T0, T0),  # never past the chain's start
    ("2026-03-01T08:00:00.0000000Z", T0, "2026-03-01T09:00:00.0000000Z"),  # never back
])
def test_the_watermark_at_the_chains_end(high, started, expected):
    position = Cursor("2026-03-01T09:00:00.0000000Z", source="graph", link="", high=high,
                      started=started)
    assert graph_cursor.ended(position) == Cursor(expected, source="graph")


def test_a_graph_event_is_keyed_as_the_index_and_says_its_schema():
    from shared.ingest.events import build_event
    from shared.messages import AlertEvent
    alert = graph_alert(1, timefmt.to_datetime(T0), endpoint=True)
    event = build_event(str(uuid.uuid4()), "C", alert, T0, None, ["x"], None, "graph",
                        alert_id="da000001")
    data = event.dump()
    assert (data["alert_id"], data["event_id"].split(":")[1]) == ("da000001", "da000001")
    assert (data["alert"]["schema"], data["alert"]["serviceSource"]) == (
        "graph", "microsoftDefenderForEndpoint")
    assert AlertEvent.parse(event.to_message()) == event


def test_a_message_sent_before_the_move_writes_nothing_with_the_old_source():
    """The fan-out saw the tenant on mde; it moved to graph before the run wrote: the run
    stops at its first write, and the next one reads Graph."""
    from shared.ingest.fanout import seen
    world = GraphWorld(source="mde", FETCH_PAGE_SIZE="3")
    world.defender.put(world.tenant.tenant_id, _alert(1, world.now))
    stale = FetchRequest(world.tenant.tenant_id,
                         seen=seen(world.tenants.get(world.tenant.tenant_id)))
    world.tenants.move_source(world.tenant.tenant_id, "graph")
    run = world.ingestor.run(stale)
    assert (run.outcome, run.error) == ("skipped", "the tenant moved to graph")
    assert world.stored() == {} and world.cursor() is None
    assert world.tenants.get(world.tenant.tenant_id).fetch_queued_at is None
    world.add_graph(1)
    assert world.fetch().new == 1


@pytest.mark.parametrize("step", ["commit", "store"])
def test_a_kill_at_any_write_of_a_long_chain_loses_and_repeats_nothing(monkeypatch, step):
    """A chain of 6 pages with one time for all and an update met mid-chain, killed at
    its 1st, 2nd... write of `step` in turn, then run to the end: every alert stored, one
    event per version, whichever write died."""
    from shared.storage.memory.ingest import MemoryAlerts, MemoryIngestState
    target = MemoryIngestState if step == "commit" else MemoryAlerts
    real = getattr(target, step)
    for kill_at in range(1, 9):
        world = GraphWorld(FETCH_PAGE_SIZE="3")
        world.add_graph(17, at=world.now)
        calls = {"n": 0}

        def dying(self, *args, _real=real, _at=kill_at, _calls=calls, **kwargs):
            _calls["n"] += 1
            if _calls["n"] == _at:
                raise SystemExit(f"killed at {step} {_at}")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(target, step, dying)
        with contextlib.suppress(SystemExit):
            world.fetch()
        monkeypatch.setattr(target, step, real)
        world.graph.put(world.tenant.tenant_id, graph_alert(
            3, world.now + timedelta(minutes=1), status="inProgress"))
        runs = world.run_all()
        assert runs[-1].outcome == "success", (kill_at, runs[-1].error)
        events = world.events()
        versions = [(e.alert_id, e.version) for e in events]
        assert len(versions) == len(set(versions)), kill_at
        assert _ids(e for e in events if e.change == "new") == sorted(
            f"ga{n:06d}-o" for n in range(17)), kill_at
        # its first version committed before the kill: then updated; else new at once
        ga3 = [(e.change, e.alert["status"]) for e in events if e.alert_id == "ga000003-o"]
        assert ga3 in ([("new", "New"), ("updated", "InProgress")],
                       [("new", "InProgress")]), (kill_at, ga3)
        assert [e.alert_id for e in events if e.change == "updated"] in (
            [], ["ga000003-o"])
        assert world.stored()["ga000003-o"]["Status"] == "InProgress"
        assert world.cursor().link == ""
