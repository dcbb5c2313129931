"""Incident triage of a `graph` tenant on the in-memory repositories, with the real
own-incident store and a fake Graph at the edge: the hub's spelling sent in Graph's
values (PATCH, then a POST for the comment), an audit entry of the incident (not of an
alert), conflicts by lastUpdateDateTime with nothing sent, refusals before any call, a
403 making the tenant read-only, and the answer stored at once so the next fetch adds no
event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import timefmt
from shared.ingest.incident_fetch import IncidentFetch, Known, parse
from shared.ingest.own_incidents import OwnIncidents
from shared.messages import IncidentEvent
from shared.microsoft.defender import Forbidden, Throttled
from shared.model import Cursor, Tenant
from shared.storage.memory.audit import MemoryAuditTrail
from shared.storage.memory.incidents import MemoryIncidents
from shared.storage.memory.tenants import MemoryTenants
from shared.triage import api
from shared.triage.incident_service import NOT_GRAPH, READ_ONLY, IncidentTriage
from shared.triage.model import Actor, Change, InvalidChange
from shared.validation import ValidationError
from tests.triage_fakes import FakeGraphItems, GraphTokens

V1 = "2026-12-03T08:00:00.1234567Z"
ALICE = Actor("oid-alice", "Alice", "entra")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="benign <b>forwarding</b> rule")


def graph_incident(version: str = V1) -> dict[str, Any]:
    return {"id": "17", "displayName": "Multi-stage incident", "severity": "high",
            "status": "active", "assignedTo": None, "classification": "unknown",
            "determination": "unknown", "customTags": [], "systemTags": [],
            "comments": [], "createdDateTime": V1, "lastUpdateDateTime": version,
            "incidentWebUrl": "https://security.microsoft.com/incidents/17",
            "alerts": [{"id": "da1"}, {"id": "fa2"}]}


class FakeGraph(FakeGraphItems):
    """GET (with its alerts), PATCH (without) and comments of one tenant's incidents;
    `refuse` raises on the next calls."""

    def __init__(self) -> None:
        super().__init__()
        self.incidents = self.items
        self.incidents["17"] = graph_incident()

    def get_incident(self, token: str, incident_id: str) -> dict[str, Any]:
        return self._read(incident_id)

    def update_incident(self, token: str, incident_id: str, body: dict[str, Any]
                        ) -> dict[str, Any]:
        self._take("PATCH", incident_id, body)
        answer = dict(self._moved(incident_id, **body))
        answer.pop("alerts")  # a PATCH answers without $expand
        return answer

    def add_incident_comment(self, token: str, incident_id: str, comment: str
                             ) -> list[dict[str, Any]]:
        return self._comment(incident_id, comment)


class World:
    def __init__(self, access: str = "triage", source: str = "graph",
                 stored: bool = True) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.tenant = Tenant(self.tenant_id, "Fabrikam", access=access, source=source)
        self.tenants, self.incidents = MemoryTenants(), MemoryIncidents()
        self.tenants.add(self.tenant)
        self.audit, self.graph, self.tokens = MemoryAuditTrail(), FakeGraph(), GraphTokens()
        if stored:  # as a fetch stored it (its event sent: the outbox is empty)
            self.incidents.commit(self.tenant_id, [(parse(
                self.tenant_id, self.graph.incidents["17"]), "{}")],
                Cursor(V1, source="graph"), None)
            self.incidents.drop_outbox(self.tenant_id, f"o~{timefmt.normalize(V1)}~17")
        self.own = OwnIncidents(self.incidents, self.tenants)
        self.service = IncidentTriage(self.tenants, self.incidents, self.audit,
                                      self.tokens, self.graph,  # type: ignore[arg-type]
                                      store_own=self.own.store)

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.graph.calls]

    def events(self) -> list[IncidentEvent]:
        return [IncidentEvent.parse(text) for _, text in self.incidents.outbox(self.tenant_id)]


def test_assign_writes_graph_records_the_incident_and_stores_the_answer():
    w = World()
    applied = w.service.apply(ALICE, w.tenant_id, "17", Change(assigned_to="alice@mssp.test"),
                              seen_version=V1, action_id="a1")
    assert applied.outcome == "done", applied.detail
    assert w.graph.calls == [("GET", "17", None),
                             ("PATCH", "17", {"assignedTo": "alice@mssp.test"})]
    assert w.tokens.scopes == ["https://graph.microsoft.com/.default"]
    entry = applied.entry
    assert (entry.incident_id, entry.alert_id) == ("17", "")
    assert entry.before["status"] == "Active" and "assignedTo" not in entry.before
    assert entry.after["assignedTo"] == "alice@mssp.test"
    assert w.audit.for_incident(w.tenant_id, "17") == [entry]
    assert w.audit.for_alert(w.tenant_id, "17") == []
    # stored at once: the row at the answered version, its alerts kept, one event by Alice
    row = w.incidents.get(w.tenant_id, "17")
    assert row.assignee == "alice@mssp.test" and row.alert_ids == ("da1", "fa2")
    assert row.version == timefmt.normalize(w.graph.incidents["17"]["lastUpdateDateTime"])
    [event] = w.events()
    assert event.by == {"id": "oid-alice", "name": "Alice", "via": "entra"}
    assert event.changed["assignee"] == ["", "alice@mssp.test"]
    listed = w.incidents.listed().items
    assert [(i.incident_id, i.version) for i in listed] == [("17", row.version)]


def test_resolve_as_false_positive_with_a_comment():
    w = World()
    applied = w.service.apply(ALICE, w.tenant_id, "17", RESOLVE, seen_version=V1,
                              action_id="a2")
    assert applied.outcome == "done", applied.detail
    assert w.kinds() == ["GET", "PATCH", "POST", "GET"]
    assert w.graph.calls[1][2] == {"status": "resolved", "classification": "falsePositive",
                                   "determination": "notMalicious"}
    assert w.graph.calls[2][2] == RESOLVE.comment
    assert applied.entry.after == {
        "status": "Resolved", "classification": "FalsePositive",
        "determination": "NotMalicious",
        "lastUpdateDateTime": w.graph.incidents["17"]["lastUpdateDateTime"]}
    assert applied.entry.change["comment"] == RESOLVE.comment
    assert applied.alert["comments"][-1]["comment"] == RESOLVE.comment
    row = w.incidents.get(w.tenant_id, "17")
    assert (row.status, row.classification) == ("resolved", "falsePositive")
    assert len(w.events()) == 1


def test_the_next_fetch_adds_no_event_for_the_stored_answer():
    w = World()
    w.service.apply(ALICE, w.tenant_id, "17", RESOLVE, seen_version=V1, action_id="a3")
    assert len(w.events()) == 1
    fetch = IncidentFetch(w.incidents, 7, 300, 10)
    committed: list[Any] = []
    counts: dict[str, int] = {}
    fetch._store(w.tenant, [parse(w.tenant_id, w.graph.incidents["17"])],
                 Cursor(V1, source="graph"), Known({}),
                 lambda changes, cursor: committed.append(changes), counts)
    assert committed == [] and counts == {"unchanged": 1}
    assert len(w.events()) == 1


def test_a_conflict_shows_the_current_state_and_sends_nothing():
    w = World()
    w.graph._moved("17", assignedTo="someone@customer.test")  # changed in Defender
    applied = w.service.apply(ALICE, w.tenant_id, "17", RESOLVE, seen_version=V1,
                              action_id="a4")
    assert applied.outcome == "conflict"
    assert w.kinds() == ["GET"]
    assert applied.alert["assignedTo"] == "someone@customer.test"
    assert "changed in Microsoft Graph since" in applied.detail
    assert applied.entry.outcome == "conflict" and applied.entry.after == {}
    assert w.events() == []


@pytest.mark.parametrize(("access", "source", "reason"), [
    ("read", "graph", READ_ONLY), ("triage", "mde", NOT_GRAPH)])
def test_a_tenant_that_cannot_take_it_is_refused_before_any_call(access, source, reason):
    w = World(access=access, source=source)
    applied = w.service.apply(ALICE, w.tenant_id, "17", RESOLVE, seen_version=V1)
    assert (applied.outcome, applied.detail) == ("refused", reason)
    assert "SecurityIncident.ReadWrite.All" in READ_ONLY
    assert w.graph.calls == [] and w.tokens.scopes == []
    assert [e.outcome for e in w.audit.for_incident(w.tenant_id, "17")] == ["refused"]


@pytest.mark.parametrize("change", [
    Change(status="New"),  # an alert's status, not an incident's
    Change(classification="FalsePositive", determination="Malware"),
    Change()])
def test_invalid_changes_are_refused_before_anything(change):
    w = World()
    with pytest.raises(InvalidChange):
        w.service.apply(ALICE, w.tenant_id, "17", change)
    assert w.graph.calls == [] and w.audit.for_incident(w.tenant_id, "17") == []


def test_the_same_action_twice_is_one_call_and_one_entry():
    w = World()
    first = w.service.apply(ALICE, w.tenant_id, "17", Change(status="InProgress"),
                            seen_version=V1, action_id="same")
    again = w.service.apply(ALICE, w.tenant_id, "17", Change(status="InProgress"),
                            seen_version=V1, action_id="same")
    assert (first.outcome, again.outcome, again.repeated) == ("done", "done", True)
    assert w.kinds() == ["GET", "PATCH"]
    assert len(w.audit.for_incident(w.tenant_id, "17")) == 1


def test_a_retry_after_a_crash_reads_graph_instead_of_sending_again():
    w = World()
    # the first attempt noted itself and reached Graph, then its worker died
    w.audit.intend(w.tenant_id, "", "crashed", datetime.now(UTC), incident_id="17")
    w.graph._moved("17", status="resolved")
    applied = w.service.apply(ALICE, w.tenant_id, "17", Change(status="Resolved"),
                              action_id="crashed")
    assert applied.outcome == "done" and "earlier attempt" in applied.detail
    assert w.kinds() == ["GET"]


def test_a_403_makes_the_tenant_read_only_with_the_reason():
    w = World()
    w.graph.refuse = [None, Forbidden("Insufficient privileges", 403, "Forbidden",
                                      transient=False)]
    applied = w.service.apply(ALICE, w.tenant_id, "17", Change(status="Resolved"),
                              seen_version=V1)
    assert applied.outcome == "refused"
    assert "SecurityIncident.ReadWrite.All" in applied.detail
    tenant = w.tenants.get(w.tenant_id)
    assert tenant.access == "read" and "SecurityIncident.ReadWrite.All" in \
        tenant.access_reason


def test_throttling_answers_retry_after():
    w = World()
    w.graph.refuse = [Throttled(7)]
    applied = w.service.apply(ALICE, w.tenant_id, "17", Change(status="Resolved"),
                              seen_version=V1)
    assert (applied.outcome, applied.retry_after) == ("throttled", 7)
    status, reply, headers = api.incident_answer(applied)
    assert (status, headers) == (429, {"Retry-After": "7"})
    assert reply.incident == {}


def test_an_incident_the_hub_has_not_stored_is_read_first_and_left_to_the_fetch():
    w = World(stored=False)
    applied = w.service.apply(ALICE, w.tenant_id, "17", Change(status="InProgress"))
    assert applied.outcome == "done"
    assert w.kinds() == ["GET", "PATCH"]
    assert applied.entry.before["status"] == "Active"
    assert w.incidents.get(w.tenant_id, "17") is None and w.events() == []


def test_the_api_takes_an_incidents_fields_in_the_hubs_spelling():
    change, seen, action_id = api.request_of(
        {"status": "Resolved", "classification": "FalsePositive",
         "determination": "NotMalicious", "comment": "x"},
        {"If-Match": V1, "Idempotency-Key": "k1"}, ALICE, api.IncidentChange)
    assert change.status == "Resolved" and seen == timefmt.normalize(V1)
    assert action_id == "entra:oid-alice:k1"
    assert api.request_of({"status": "Active"}, {}, ALICE, api.IncidentChange)[0].status \
        == "Active"
    with pytest.raises(ValidationError) as bad:
        api.request_of({"status": "New"}, {}, ALICE, api.IncidentChange)
    assert bad.value.errors[0]["field"] == "status"
    with pytest.raises(ValidationError) as bad:
        api.incident_target(str(uuid.uuid4()), "17/../x")
    assert bad.value.errors[0]["field"] == "incident_id"
