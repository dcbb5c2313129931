"""Incident triage of `graph` tenants through the simulator's Graph API over HTTPS and
Azurite: the simulator's incident comments as Graph documents them; an incident assigned,
then a stale action refused as a conflict with nothing sent, then resolved as a false
positive with a comment (the simulator shows it, the audit trail has each action under the
incident, the hub's row follows at once, and the next fetches add no second event); a
read-only tenant refused before any call (the API's 403 with the reason), and a 403 from
Graph making the tenant read-only."""

from __future__ import annotations

import pytest
import requests

from shared.microsoft.graph_security import GRAPH_SCOPE, GraphSecurityClient
from shared.microsoft.identity import Tokens
from shared.model import Tenant
from shared.services import incident_triage_on, incidents_repo
from shared.storage import tables
from shared.storage.audit import AuditTrail
from shared.triage import api
from shared.triage.model import Actor, Change
from tests.integration.graph_fixtures import READ_ONLY, READ_WRITE
from tests.integration.graph_fixtures import graph_pipeline as graph_pipeline  # the fixture
from tests.integration.ingest_fixtures import pipeline as pipeline  # the fixture
from tests.integration.sim_helpers import graph_token

PRODUCTS = ["microsoftDefenderForOffice365", "microsoftDefenderForIdentity"]
ALICE = Actor("oid-alice", "Alice", "entra")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="a <b>newsletter</b>, not phishing")


@pytest.fixture
def triage(graph_pipeline):
    settings = graph_pipeline.settings
    return incident_triage_on(settings, Tokens(settings.identity))


def _tenant(pipeline, name: str, grant=READ_WRITE, access: str = "triage"
            ) -> tuple[Tenant, str]:
    """A graph tenant with one incident of two alerts, fetched once."""
    created = pipeline.sim.add_tenant(name, consent=[pipeline.simulator.config.client_id])
    tenant = pipeline.tenants.add(Tenant(created["id"], name, source="graph"))
    made = pipeline.sim.generate_graph(tenant.tenant_id, 2, PRODUCTS, alerts_per_incident=2,
                                       age_seconds=600)
    pipeline.sim.grant(tenant.tenant_id, pipeline.simulator.config.client_id, grant)
    pipeline.tenants.set_access(tenant.tenant_id, access, "")
    assert pipeline.fetch(tenant).outcome == "success"
    pipeline.events(tenant.tenant_id)
    (incident_id,) = made["incident_ids"]
    return tenant, incident_id


def _graph(pipeline, tenant_id: str) -> tuple[GraphSecurityClient, str]:
    settings = pipeline.settings
    client = GraphSecurityClient(pipeline.simulator.base_url, 10,
                                 settings.identity.ca_bundle)
    return client, Tokens(settings.identity).token(tenant_id, GRAPH_SCOPE)


def test_the_simulators_incident_comments_as_graph_documents_them(simulator, sim):
    app = simulator.config.client_id
    tenant = sim.add_tenant("Incident Comments", consent=[app])
    sim.grant(tenant["id"], app, READ_WRITE)
    (incident_id,) = sim.generate_graph(tenant["id"], 1, PRODUCTS[:1])["incident_ids"]
    url = f"{simulator.base_url}/v1.0/security/incidents/{incident_id}/comments"

    def post(bearer: str, body: dict) -> requests.Response:
        return requests.post(url, json=body, timeout=30, verify=str(simulator.config.ca_path),
                             headers={"Authorization": f"Bearer {bearer}"})

    bearer = graph_token(simulator, tenant["id"])
    ok = post(bearer, {"@odata.type": "microsoft.graph.security.alertComment",
                       "comment": "checked"})
    assert ok.status_code == 200, ok.text
    last = ok.json()["value"][-1]
    assert (last["comment"], last["createdByDisplayName"]) == ("checked",
                                                               "MSSP Hub (simulated)")
    assert post(bearer, {"comment": "no type"}).status_code == 400
    sim.grant(tenant["id"], app, READ_ONLY)
    refused = post(graph_token(simulator, tenant["id"]), {
        "@odata.type": "microsoft.graph.security.alertComment", "comment": "x"})
    assert refused.status_code == 403
    assert "SecurityIncident.ReadWrite.All" in refused.json()["error"]["message"]


def test_an_incident_is_assigned_then_resolved_with_a_comment_and_audited(
        graph_pipeline, triage):
    pipeline = graph_pipeline
    tenant, incident_id = _tenant(pipeline, "Incident Triage Co")
    tid = tenant.tenant_id
    repo = incidents_repo(pipeline.settings)
    seen = repo.get(tid, incident_id).version
    assigned = triage.apply(ALICE, tid, incident_id, Change(assigned_to="alice@mssp.test"),
                            seen_version=seen, action_id="i-1")
    assert assigned.outcome == "done", assigned.detail
    graph, bearer = _graph(pipeline, tid)
    assert graph.get_incident(bearer, incident_id)["assignedTo"] == "alice@mssp.test"
    row = repo.get(tid, incident_id)
    assert row.assignee == "alice@mssp.test" and row.version > seen  # stored at once
    assert len(row.alert_ids) == 2

    stale = triage.apply(ALICE, tid, incident_id, RESOLVE, seen_version=seen,
                         action_id="i-2")
    assert stale.outcome == "conflict"  # rendered before the assignment: nothing sent
    assert stale.alert["assignedTo"] == "alice@mssp.test"
    assert graph.get_incident(bearer, incident_id)["status"] == "active"

    resolved = triage.apply(ALICE, tid, incident_id, RESOLVE, seen_version=row.version,
                            action_id="i-3")
    assert resolved.outcome == "done", resolved.detail
    now = graph.get_incident(bearer, incident_id)
    assert (now["status"], now["classification"], now["determination"]) == (
        "resolved", "falsePositive", "notMalicious")
    assert [c["comment"] for c in now["comments"]] == [RESOLVE.comment]
    assert now["comments"][-1]["createdByDisplayName"] == "MSSP Hub (simulated)"
    again = triage.apply(ALICE, tid, incident_id, RESOLVE, action_id="i-3")
    assert again.repeated
    assert len(graph.get_incident(bearer, incident_id)["comments"]) == 1

    trail = AuditTrail(tables.table(pipeline.storage, tables.AUDIT_TRAIL))
    entries = sorted(trail.for_incident(tid, incident_id), key=lambda e: e.action_id)
    assert [(e.action_id, e.outcome, e.alert_id) for e in entries] == [
        ("i-1", "done", ""), ("i-2", "conflict", ""), ("i-3", "done", "")]
    assert entries[2].before["assignedTo"] == "alice@mssp.test"
    assert (entries[2].after["status"], entries[2].after["determination"]) == (
        "Resolved", "NotMalicious")
    assert entries[2].change["comment"] == RESOLVE.comment
    assert trail.for_alert(tid, incident_id) == []
    row = repo.get(tid, incident_id)
    assert (row.status, row.classification) == ("resolved", "falsePositive")

    # the next fetches deliver the two own versions once each, and add nothing
    pipeline.fetch(tenant)
    pipeline.fetch(tenant)
    pipeline.events(tid)
    updates = [e for e in pipeline.incident_events
               if e["incident_id"] == incident_id and e["change"] == "updated"]
    assert len(updates) == len({e["event_id"] for e in updates}) == 2, updates
    assert all(e["by"]["id"] == "oid-alice" for e in updates)
    assert updates[-1]["incident"]["status"] == "resolved"
    assert repo.listed(tenants=(tid,)).items[0].status == "resolved"


def test_a_read_only_tenant_is_refused_before_any_call_with_the_reason(
        graph_pipeline, triage):
    pipeline = graph_pipeline
    tenant, incident_id = _tenant(pipeline, "Incident Read Only", grant=READ_ONLY,
                                  access="read")
    applied = triage.apply(ALICE, tenant.tenant_id, incident_id, RESOLVE, action_id="r-1")
    status, reply, _ = api.incident_answer(applied)
    assert (status, reply.outcome) == (403, "refused")
    assert "SecurityIncident.ReadWrite.All" in reply.detail
    graph, bearer = _graph(pipeline, tenant.tenant_id)
    assert graph.get_incident(bearer, incident_id)["status"] == "active"
    trail = AuditTrail(tables.table(pipeline.storage, tables.AUDIT_TRAIL))
    assert [e.outcome for e in trail.for_incident(tenant.tenant_id, incident_id)] == [
        "refused"]


def test_a_403_from_graph_makes_the_tenant_read_only(graph_pipeline, triage):
    pipeline = graph_pipeline
    tenant, incident_id = _tenant(pipeline, "Incident Lost Grant", grant=READ_ONLY)
    applied = triage.apply(ALICE, tenant.tenant_id, incident_id, Change(status="InProgress"),
                           action_id="f-1")
    assert applied.outcome == "refused"
    stored = pipeline.tenants.get(tenant.tenant_id)
    assert stored.access == "read"
    assert "SecurityIncident.ReadWrite.All" in stored.access_reason
