"""Triage of a `graph` tenant on the in-memory repositories and a fake Graph at the edge:
Defender's Change sent in Graph's values (PATCH, then a POST for the comment), the audit
trail in Defender's spelling, conflicts by lastUpdateDateTime, a 403 making the tenant
read-only, own changes stored in Graph's schema, access levels from the Graph roles, and
bulk as a PATCH per alert within Graph's budget."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import timefmt
from shared.microsoft.defender import Forbidden, Rejected, Throttled
from shared.model import Tenant
from shared.storage import call_budget
from shared.storage.alert_rows import alert_rows
from shared.storage.memory.audit import MemoryAuditTrail
from shared.storage.memory.ingest import MemoryAlerts
from shared.storage.memory.tenants import MemoryTenants
from shared.tenants.access import GRAPH_TRIAGE_ROLES, granted, permissions
from shared.triage import graph_change
from shared.triage.bulk import graph_calls
from shared.triage.model import DETERMINATIONS, Actor, Change
from shared.triage.service import GRAPH_READ_ONLY, TriageService
from tests.helpers import settings
from tests.triage_fakes import FakeGraphItems, GraphTokens

V1 = "2026-12-03T08:00:00.1234567Z"
ALICE = Actor("oid-alice", "Alice", "entra")
ACTOR_KEY = Actor("key-ci", "ci", "api")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="Clean", comment="benign forwarding rule")


def office_alert(alert_id: str = "fa1") -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.security.alert", "id": alert_id,
            "providerAlertId": alert_id, "serviceSource": "microsoftDefenderForOffice365",
            "title": "Email reported by user as malware or phish", "severity": "medium",
            "status": "new", "classification": "unknown", "determination": "unknown",
            "assignedTo": None, "createdDateTime": V1, "lastUpdateDateTime": V1,
            "comments": [], "evidence": []}


class FakeGraph(FakeGraphItems):
    """GET, PATCH and comments of alerts_v2; `refuse` raises on the next call."""

    def __init__(self) -> None:
        super().__init__()
        self.alerts = self.items
        self.no_content = False  # PATCH answers 204

    def get_alert(self, token: str, alert_id: str) -> dict[str, Any]:
        return self._read(alert_id)

    def update_alert(self, token: str, alert_id: str, body: dict[str, Any]) -> dict[str, Any]:
        self._take("PATCH", alert_id, body)
        alert = self._moved(alert_id, **body)
        return {} if self.no_content else dict(alert)

    def add_comment(self, token: str, alert_id: str, comment: str) -> list[dict[str, Any]]:
        return self._comment(alert_id, comment)


class World:
    def __init__(self, access: str = "triage", stored: bool = True) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.tenants, self.alerts = MemoryTenants(), MemoryAlerts()
        self.audit, self.graph, self.tokens = MemoryAuditTrail(), FakeGraph(), GraphTokens()
        self.tenants.add(Tenant(self.tenant_id, "Fabrikam", access=access, source="graph"))
        alert = office_alert()
        self.graph.alerts["fa1"] = alert
        if stored:
            self.alerts.store(alert_rows(self.tenant_id, alert, schema="graph"))
        self.expected: list[tuple[Any, ...]] = []
        self.stored_own: list[tuple[Any, ...]] = []
        self.defender_calls: list[Any] = []
        self.service = TriageService(
            settings(), self.tenants, self.alerts, self.audit, self, self.tokens,
            expect_own=lambda *a: self.expected.append(a),
            store_own=lambda *a, **kw: self.stored_own.append((*a, kw)),
            graph=self.graph)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # the Defender client: never called
        if name in ("get_alert", "update_alert"):
            return lambda *a, **kw: self.defender_calls.append(a)
        raise AttributeError(name)

    def apply(self, change: Change = RESOLVE, **options: Any):
        return self.service.apply(ALICE, self.tenant_id, "fa1", change, **options)


def test_the_change_goes_to_graph_in_its_values_and_the_audit_keeps_defenders():
    world = World()
    applied = world.apply(action_id="a1")
    assert applied.outcome == "done", applied.detail
    assert [c[0] for c in world.graph.calls] == ["PATCH", "POST", "GET"]
    assert world.graph.calls[0][2] == {"status": "resolved", "classification": "falsePositive",
                                       "determination": "notMalicious"}
    assert world.graph.calls[1][2] == "benign forwarding rule"
    assert world.tokens.scopes == ["https://graph.microsoft.com/.default"]
    assert world.defender_calls == []
    entry = world.audit.recorded(world.tenant_id, "fa1", "a1")
    assert entry is not None and entry.change == RESOLVE.body()
    assert entry.before["status"] == "New"
    assert entry.before["lastUpdateTime"] == timefmt.normalize(V1)
    assert (entry.after["status"], entry.after["classification"],
            entry.after["determination"]) == ("Resolved", "FalsePositive", "NotMalicious")
    assert entry.after["lastUpdateTime"] == world.graph.alerts["fa1"]["lastUpdateDateTime"]
    assert applied.alert["comments"][-1]["comment"] == "benign forwarding rule"
    # own changes: marked in the hub's spelling, the Graph alert stored as graph
    assert world.expected == [(world.tenant_id, ["fa1"], {
        "status": "Resolved", "classification": "FalsePositive",
        "determination": "NotMalicious", "comment": "benign forwarding rule"}, ALICE)]
    (tenant_id, document, actor, options), = world.stored_own
    assert (tenant_id, actor) == (world.tenant_id, ALICE)
    assert document == world.graph.alerts["fa1"] and options == {"schema": "graph"}


def test_an_assignment_alone_is_one_patch_and_its_answer_is_stored():
    world = World()
    applied = world.apply(Change(assigned_to="soc@mssp.example"), action_id="a2")
    assert applied.outcome == "done"
    assert [c[0] for c in world.graph.calls] == ["PATCH"]
    assert world.graph.calls[0][2] == {"assignedTo": "soc@mssp.example"}
    assert applied.entry.after["assignedTo"] == "soc@mssp.example"


def test_a_204_patch_is_read_back():
    world = World()
    world.graph.no_content = True
    applied = world.apply(Change(status="InProgress"), action_id="a3")
    assert [c[0] for c in world.graph.calls] == ["PATCH", "GET"]
    assert applied.entry.after["status"] == "InProgress"


def test_a_stale_page_is_a_conflict_by_last_update_date_time():
    world = World()
    world.graph._moved("fa1", assignedTo="someone@customer.example")
    applied = world.apply(seen_version=V1, action_id="a4")
    assert applied.outcome == "conflict"
    assert "changed in Microsoft Graph" in applied.detail
    assert [c[0] for c in world.graph.calls] == ["GET"]
    assert applied.alert["assignedTo"] == "someone@customer.example"
    same = World()
    assert same.apply(seen_version=V1, action_id="a5").outcome == "done"


def test_a_403_makes_the_tenant_read_only_naming_the_graph_role():
    world = World()
    world.graph.refuse = [Forbidden("Missing application roles", 403, "Forbidden",
                                    transient=False)]
    applied = world.apply(action_id="a6")
    assert applied.outcome == "refused" and "SecurityAlert.ReadWrite.All" in applied.detail
    tenant = world.tenants.get(world.tenant_id)
    assert tenant.access == "read" and "SecurityAlert.ReadWrite.All" in tenant.access_reason
    again = world.apply(action_id="a7")
    assert again.outcome == "refused" and len(world.graph.calls) == 1


def test_a_read_only_graph_tenant_is_refused_before_any_call():
    world = World(access="read")
    applied = world.apply(action_id="a8")
    assert applied.outcome == "refused" and applied.detail == GRAPH_READ_ONLY
    assert world.graph.calls == []


def test_a_comment_refused_after_the_patch_says_the_fields_changed():
    world = World()
    world.graph.refuse = [None, Rejected("comment too long", 400, "BadRequest",
                                         transient=False)]
    applied = world.apply(action_id="a9")
    assert applied.outcome == "failed"
    assert "fields were changed, the comment was not added" in applied.detail


def test_throttling_is_recorded_with_its_wait():
    world = World()
    world.graph.refuse = [Throttled(30)]
    applied = world.apply(action_id="b1")
    assert applied.outcome == "throttled" and applied.retry_after == 30


def test_a_retry_after_a_dead_attempt_finds_the_change_in_graph():
    world = World()
    world.audit.intend(world.tenant_id, "fa1", "b2", datetime.now(UTC))  # died after
    world.graph.update_alert("t", "fa1", graph_change.patch_body(RESOLVE))
    world.graph.add_comment("t", "fa1", RESOLVE.comment or "")
    world.graph.calls.clear()
    applied = world.apply(action_id="b2")
    assert applied.outcome == "done" and "earlier attempt" in applied.detail
    assert [c[0] for c in world.graph.calls] == ["GET"]


@pytest.mark.parametrize(("defender", "graph"), [
    ("CompromisedUser", "compromisedAccount"), ("Clean", "notMalicious"),
    ("InsufficientData", "notEnoughDataToValidate"),
    ("ConfirmedActivity", "confirmedUserActivity"), ("MultiStagedAttack", "multiStagedAttack"),
    ("SecurityTesting", "securityTesting")])
def test_determinations_map_to_graphs_enum(defender, graph):
    classification = next(c for c, dets in DETERMINATIONS.items() if defender in dets)
    body = graph_change.patch_body(Change(classification=classification,
                                          determination=defender))
    assert body["determination"] == graph
    assert body["classification"] == classification[0].lower() + classification[1:]


def test_graph_triage_access_needs_the_readwrite_role():
    assert granted("triage", list(GRAPH_TRIAGE_ROLES), "graph").access == "triage"
    short = granted("triage", ["SecurityAlert.Read.All"], "graph")
    assert short.access == "read" and "SecurityAlert.ReadWrite.All" in short.reason
    # a Defender role does not make a graph tenant writable, nor the reverse
    assert granted("triage", ["Alert.ReadWrite.All"], "graph").access == "read"
    assert granted("triage", list(GRAPH_TRIAGE_ROLES)).access == "read"
    assert "SecurityAlert.Read.All" in granted("read", [], "graph").reason
    assert "SecurityAlert.ReadWrite.All" in permissions("graph")["triage"].role
    assert permissions("mde")["triage"].role == "Alert.ReadWrite.All"


def test_bulk_counts_graph_calls_per_alert_and_graphs_budget():
    assert graph_calls(RESOLVE) == 2
    assert graph_calls(Change(comment="x")) == 1
    assert graph_calls(Change(status="Resolved")) == 1
    assert call_budget.GRAPH.per_minute == 150


# bulk -------------------------------------------------------------------------------
class TimedGraph(FakeGraph):
    """FakeGraph that keeps when each call was made (the bulk clock's time)."""

    def __init__(self, clock: Any) -> None:
        super().__init__()
        self.clock, self.times = clock, []

    def _take(self, kind: str, alert_id: str, body: Any) -> None:
        self.times.append(self.clock())
        super()._take(kind, alert_id, body)


def bulk_world(n_graph: int, n_mde: int):
    from shared.storage.memory.triage import MemoryBulkJobs, MemoryCallBudget
    from shared.storage.queues import BulkQueue
    from shared.triage.bulk import BulkStores, BulkTriage, Hooks, Target
    from tests.triage_fakes import Audit, Clock, FakeDefender, Queue

    clock = Clock()
    defender, graph, tenants = FakeDefender(clock), TimedGraph(clock), MemoryTenants()
    jobs, budget, queue, audit = MemoryBulkJobs(), MemoryCallBudget(), Queue(), Audit()
    stored: list[tuple[Any, ...]] = []
    forbidden: list[tuple[str, str]] = []
    service = BulkTriage(
        BulkStores(jobs, budget, tenants, BulkQueue(queue)), defender,
        Hooks(record=audit.record, store=lambda *a, **kw: stored.append((*a, kw)),
              forbidden=lambda t, why: forbidden.append((t, why))),
        token=lambda t, scope=None: f"token {scope}", base=lambda t: f"https://{t.tenant_id}",
        clock=clock, graph=graph)  # type: ignore[arg-type]
    g_id, m_id = str(uuid.UUID(int=7)), str(uuid.UUID(int=8))
    tenants.add(Tenant(g_id, "Graph Co", access="triage", source="graph"))
    tenants.add(Tenant(m_id, "Mde Co", access="triage"))
    targets = []
    for i in range(n_graph):
        graph.alerts[f"g{i:04d}"] = office_alert(f"g{i:04d}")
        targets.append(Target(g_id, f"g{i:04d}", {"status": "New"}))
    targets += [Target(m_id, a, {"status": "New"}) for a in defender.seed(m_id, n_mde)]

    def drain() -> None:
        due: list[tuple[datetime, Any]] = []
        for _ in range(10_000):
            due += [(clock() + timedelta(seconds=d or 0), m) for m, d in queue.sent]
            queue.sent.clear()
            if not due:
                return
            due.sort(key=lambda x: x[0])
            at, message = due.pop(0)
            clock.now = max(clock.now, at)
            service.run(message)
        raise AssertionError("did not finish")

    return service, graph, defender, audit, stored, forbidden, targets, drain, g_id


def test_bulk_writes_a_graph_tenant_per_alert_within_150_calls_a_minute():
    service, graph, defender, audit, _, _, targets, drain, g_id = bulk_world(200, 50)
    job = service.submit(ACTOR_KEY, RESOLVE, targets)
    drain()
    status = service.status(job.job_id, limit=10_000)
    assert status is not None and status.finished
    assert Counter(i.outcome for i in status.items) == {"done": 250}
    assert all(a["status"] == "resolved" and a["comments"] for a in graph.alerts.values())
    assert Counter(c[0] for c in graph.calls) == {"PATCH": 200, "POST": 200}
    times = sorted(graph.times)
    for i, t in enumerate(times):  # no minute holds more than 150 Graph calls
        assert sum(1 for u in times[i:] if (u - t).total_seconds() < 60) <= 150
    assert [c[0] for c in defender.calls] == ["batch"]  # the mde tenant: one batch
    work = next(w for w in status.works if w.tenant_id == g_id)
    assert work.calls == 400
    graph_entries = [e for e in audit.entries.values() if e.tenant_id == g_id]
    assert len(graph_entries) == 200
    assert graph_entries[0].after["determination"] == "NotMalicious"


def test_bulk_on_a_graph_tenant_stores_the_patch_answer_as_graph_and_a_403_stops_it():
    service, graph, _, _, stored, forbidden, targets, drain, g_id = bulk_world(3, 0)
    job = service.submit(ACTOR_KEY, Change(status="InProgress"), targets)
    drain()
    assert [s[-1] for s in stored] == [{"schema": "graph"}] * 3
    graph.refuse = [Forbidden("Missing application roles", 403, "Forbidden",
                              transient=False)]
    job = service.submit(ACTOR_KEY, Change(status="Resolved"), targets)
    drain()
    status = service.status(job.job_id, limit=100)
    assert status is not None
    assert Counter(i.outcome for i in status.items) == {"refused": 3}
    assert forbidden and forbidden[0][0] == g_id and "Microsoft Graph" in forbidden[0][1]


# the alert page -----------------------------------------------------------------------
def test_the_alert_pages_forms_act_on_a_graph_alert():
    import re

    from tests.unit.test_portal_alert_page import ALERT, TENANT, Desk

    graph = FakeGraph()
    graph.alerts[ALERT] = office_alert(ALERT)
    audit, tokens = MemoryAuditTrail(), GraphTokens()
    desk = Desk()
    desk.tenants.move_source(TENANT, "graph")
    desk.alerts.store(alert_rows(TENANT, office_alert(ALERT), schema="graph"))
    service = TriageService(desk.settings, desk.tenants, desk.alerts, audit, None,  # type: ignore[arg-type]
                            tokens, graph=graph)  # type: ignore[arg-type]
    desk.portal.triage_views.triage = service
    desk.triage = service  # type: ignore[assignment]
    body = desk.get().body
    assert "Email reported by user as malware or phish" in body
    fields = desk.form(body, "classify-form")
    assert fields["seen_version"] == V1  # Graph's lastUpdateDateTime
    response = desk.post("classify", {**fields, "verdict": "FalsePositive/NotMalicious",
                                      "resolve": "yes", "comment": "benign"})
    assert response.status == 200, response.body
    assert re.search(r'id="a-status">Resolved<', response.body)
    assert graph.alerts[ALERT]["status"] == "resolved"
    assert graph.alerts[ALERT]["comments"][-1]["comment"] == "benign"
    assert [e.outcome for e in audit.for_alert(TENANT, ALERT)] == ["done"]
    stale = desk.post("assign", {**desk.form(body, "assign-form"), "assign_to": "me"})
    assert stale.status == 409  # the page's version is gone: shown, not overwritten


def test_the_consent_page_names_graphs_readwrite_permissions_for_triage():
    from types import SimpleNamespace

    from shared.web.pages import render

    invitation = SimpleNamespace(source="graph", display_name="Fabrikam", expected_tenant="",
                                 expires_at=datetime(2026, 12, 10, tzinfo=UTC))
    html = render("invitation.html", invitation=invitation,
                  permission=permissions("graph")["triage"], client_id="triage-app",
                  action="/x", mssp_name="Acme")
    assert "SecurityAlert.ReadWrite.All" in html and "SecurityIncident.ReadWrite.All" in html
    assert "Triage" in html and "triage application" in html
    html = render("invitation.html", invitation=invitation,
                  permission=permissions("graph")["read"], client_id="app", action="/x",
                  mssp_name="Acme")
    assert "ReadWrite" not in html and "SecurityAlert.Read.All" in html


def test_a_graph_triage_invitation_grants_triage_from_the_graph_roles(monkeypatch):
    from shared.tenants.onboarding import ConsentApp
    from tests.unit.test_access_levels import TRIAGE, TriageWorld
    from tests.unit.test_graph_source import ProbedGraph, ScopedTokens

    def world_with(roles: list[str]) -> TriageWorld:
        world = TriageWorld(monkeypatch)
        world.triage_tokens = ScopedTokens(roles)  # type: ignore[assignment]
        world.service = type(world.service)(
            settings(MSSP_NAME="Acme MSSP", **TRIAGE), ScopedTokens(),  # type: ignore[arg-type]
            world.defender, world.tenants, world.invitations, world.states, world.notices,
            world.sign_in, triage=ConsentApp(world.triage_tokens, world.triage_sign_in),
            graph=ProbedGraph())  # type: ignore[arg-type]
        return world

    world = world_with(list(GRAPH_TRIAGE_ROLES))
    tenant_id = str(uuid.uuid4())
    invitation, outcome = world.onboard(tenant_id, world.invite(access="triage",
                                                                source="graph"))
    assert outcome.kind == "connected", outcome
    tenant = world.tenants.get(tenant_id)
    assert (tenant.source, tenant.access, tenant.consent_app) == ("graph", "triage", "triage")
    permission, _ = world.service.terms(invitation)
    assert "SecurityAlert.ReadWrite.All" in permission.role
    (notice,) = world.notices_of(tenant_id)
    assert "SecurityAlert.ReadWrite.All" in notice["Body"]

    short = world_with(["SecurityAlert.Read.All"])
    tenant_id = str(uuid.uuid4())
    outcome = short.onboard(tenant_id, short.invite(access="triage", source="graph"))[1]
    assert outcome.kind == "connected" and "cannot update alerts" in outcome.message
    tenant = short.tenants.get(tenant_id)
    assert tenant.access == "read" and "not SecurityAlert.ReadWrite.All" in \
        tenant.access_reason
