"""Triage of `graph` tenants through the simulator's Graph API over HTTPS and Azurite:
Graph's update endpoints as the simulator models them (validation, error bodies, roles,
comments with the caller's name and time), an Office 365 alert assigned and resolved as a
false positive with a comment (the simulator shows it, the audit trail has it, the hub's
copy follows), an endpoint alert changed through Graph is changed in `/api/alerts` too,
and a 403 without the ReadWrite role makes the tenant read-only."""

from __future__ import annotations

import pytest
import requests

from shared.microsoft.defender import DefenderClient, Forbidden, NotFound, Rejected
from shared.microsoft.graph_security import GRAPH_SCOPE, GraphSecurityClient
from shared.microsoft.identity import Tokens
from shared.services import triage_on
from shared.storage import tables
from shared.storage.audit import AuditTrail
from shared.triage.model import Actor, Change
from tests.integration.graph_fixtures import READ_ONLY, READ_WRITE
from tests.integration.graph_fixtures import graph_pipeline as graph_pipeline  # the fixture
from tests.integration.ingest_fixtures import pipeline as pipeline  # the fixture
from tests.integration.sim_helpers import get_alerts, graph_token, token

OFFICE, ENDPOINT = "microsoftDefenderForOffice365", "microsoftDefenderForEndpoint"
ALICE = Actor("oid-alice", "Alice", "entra")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="user forwarded a newsletter")


@pytest.fixture
def triage(graph_pipeline):
    settings = graph_pipeline.settings
    return triage_on(settings, Tokens(settings.identity),
                     DefenderClient(10, settings.identity.ca_bundle))


def _graph_tenant(pipeline, name, products, grant=READ_WRITE, access="triage"):
    tenant = pipeline.add_tenant(name)
    ids = pipeline.sim.generate_graph(tenant.tenant_id, len(products), products)["ids"]
    pipeline.sim.grant(tenant.tenant_id, pipeline.simulator.config.client_id, grant)
    pipeline.tenants.move_source(tenant.tenant_id, "graph")
    pipeline.tenants.set_access(tenant.tenant_id, access, "")
    pipeline.fetch(tenant)
    return tenant, ids


def _v2(pipeline, tenant_id, alert_id):
    return next(a for a in pipeline.sim.graph_alerts(tenant_id) if a["id"] == alert_id)


def _request(simulator, method, path, bearer, body):
    return requests.request(method, f"{simulator.base_url}{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {bearer}"},
                            verify=str(simulator.config.ca_path))


# the simulator's Graph updates --------------------------------------------------------
def test_graph_updates_validate_refuse_and_comment_as_graph_does(simulator, sim):
    app = simulator.config.client_id
    tenant = sim.add_tenant("Graph Writes", consent=[app])
    sim.grant(tenant["id"], app, READ_WRITE)
    (alert_id,) = sim.generate_graph(tenant["id"], 1, [OFFICE])["ids"]
    bearer = graph_token(simulator, tenant["id"])
    path = f"/v1.0/security/alerts_v2/{alert_id}"
    for body in ({"status": "Resolved"}, {"classification": "benign"}, {"severity": "low"},
                 {}, {"determination": "apt", "title": "x"}):
        refused = _request(simulator, "PATCH", path, bearer, body)
        assert refused.status_code == 400, body
        assert refused.json()["error"]["code"] == "BadRequest"
    before = _v2_raw(simulator, bearer, path)
    ok = _request(simulator, "PATCH", path, bearer, {
        "status": "resolved", "classification": "falsePositive",
        "determination": "notMalicious", "assignedTo": "soc@mssp.test"})
    assert ok.status_code == 200, ok.text
    after = ok.json()
    assert (after["status"], after["classification"], after["determination"],
            after["assignedTo"]) == ("resolved", "falsePositive", "notMalicious",
                                     "soc@mssp.test")
    assert after["lastUpdateDateTime"] > before["lastUpdateDateTime"]
    assert after["resolvedDateTime"]
    comments = _request(simulator, "POST", f"{path}/comments", bearer, {
        "@odata.type": "microsoft.graph.security.alertComment", "comment": "checked"})
    assert comments.status_code == 200, comments.text
    last = comments.json()["value"][-1]
    assert last["comment"] == "checked" and last["createdByDisplayName"] == \
        "MSSP Hub (simulated)" and last["createdDateTime"]
    assert _request(simulator, "POST", f"{path}/comments", bearer,
                    {"comment": "no type"}).status_code == 400
    missing = _request(simulator, "PATCH", "/v1.0/security/alerts_v2/nope", bearer,
                       {"status": "new"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NotFound"
    incident_id = after["incidentId"]
    patched = _request(simulator, "PATCH", f"/v1.0/security/incidents/{incident_id}",
                       bearer, {"customTags": ["mssp"], "assignedTo": "soc@mssp.test"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["customTags"] == ["mssp"]


def _v2_raw(simulator, bearer, path):
    return requests.get(f"{simulator.base_url}{path}", timeout=30,
                        headers={"Authorization": f"Bearer {bearer}"},
                        verify=str(simulator.config.ca_path)).json()


def test_graph_writes_need_the_readwrite_roles_and_are_throttled(simulator, sim):
    app = simulator.config.client_id
    tenant = sim.add_tenant("Graph Read Only Writes", consent=[app])
    sim.grant(tenant["id"], app, READ_ONLY)
    (alert_id,) = sim.generate_graph(tenant["id"], 1, [OFFICE])["ids"]
    bearer = graph_token(simulator, tenant["id"])
    path = f"/v1.0/security/alerts_v2/{alert_id}"
    refused = _request(simulator, "PATCH", path, bearer, {"status": "inProgress"})
    assert refused.status_code == 403
    assert "SecurityAlert.ReadWrite.All" in refused.json()["error"]["message"]
    assert _request(simulator, "POST", f"{path}/comments", bearer, {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": "x"}).status_code == 403
    sim.grant(tenant["id"], app, READ_WRITE)
    bearer = graph_token(simulator, tenant["id"])
    sim.limits(graph={"per_minute": 2})
    try:
        codes = [_request(simulator, "PATCH", path, bearer, {"status": "inProgress"}
                          ).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
    finally:
        sim.limits(graph={"per_minute": 150})
        sim.advance_clock(61)


def test_an_endpoint_alert_changed_through_graph_is_changed_in_the_defender_api(
        simulator, sim):
    app = simulator.config.client_id
    tenant = sim.add_tenant("Graph One State", consent=[app])
    sim.grant(tenant["id"], app, {**READ_WRITE, "https://api.securitycenter.microsoft.com":
                                  ["Alert.Read.All"]})
    (alert_id,) = sim.generate_graph(tenant["id"], 1, [ENDPOINT])["ids"]
    bearer = graph_token(simulator, tenant["id"])
    path = f"/v1.0/security/alerts_v2/{alert_id}"
    assert _request(simulator, "PATCH", path, bearer, {
        "status": "resolved", "classification": "truePositive",
        "determination": "compromisedAccount"}).status_code == 200
    assert _request(simulator, "POST", f"{path}/comments", bearer, {
        "@odata.type": "microsoft.graph.security.alertComment",
        "comment": "contained"}).status_code == 200
    mde = next(a for a in get_alerts(simulator, token(simulator, tenant["id"])).json()[
        "value"] if a["id"] == alert_id)
    assert (mde["status"], mde["classification"], mde["determination"]) == (
        "Resolved", "TruePositive", "CompromisedAccount")
    assert mde["comments"][-1]["comment"] == "contained"
    assert mde["resolvedTime"]
    v2 = _v2_raw(simulator, bearer, path)
    assert v2["lastUpdateDateTime"] == mde["lastUpdateTime"]
    assert v2["comments"][-1]["comment"] == "contained"


# the hub's triage of a graph tenant ---------------------------------------------------
def test_an_office_alert_is_assigned_then_resolved_and_audited(graph_pipeline, triage):
    pipeline = graph_pipeline
    tenant, (alert_id,) = _graph_tenant(pipeline, "Graph Triage Office", [OFFICE])
    tid = tenant.tenant_id
    seen = _v2(pipeline, tid, alert_id)["lastUpdateDateTime"]
    assigned = triage.apply(ALICE, tid, alert_id, Change(assigned_to="alice@mssp.test"),
                            seen_version=seen, action_id="g-1")
    assert assigned.outcome == "done", assigned.detail
    assert _v2(pipeline, tid, alert_id)["assignedTo"] == "alice@mssp.test"
    stale = triage.apply(ALICE, tid, alert_id, RESOLVE, seen_version=seen,
                         action_id="g-2")
    assert stale.outcome == "conflict"  # the page was rendered before the assignment
    resolved = triage.apply(ALICE, tid, alert_id, RESOLVE,
                            seen_version=assigned.entry.after["lastUpdateTime"],
                            action_id="g-3")
    assert resolved.outcome == "done", resolved.detail
    v2 = _v2(pipeline, tid, alert_id)
    assert (v2["status"], v2["classification"], v2["determination"]) == (
        "resolved", "falsePositive", "notMalicious")
    assert v2["comments"][-1]["comment"] == RESOLVE.comment
    assert v2["comments"][-1]["createdByDisplayName"] == "MSSP Hub (simulated)"
    again = triage.apply(ALICE, tid, alert_id, RESOLVE, action_id="g-3")
    assert again.repeated
    assert len(_v2(pipeline, tid, alert_id)["comments"]) == len(v2["comments"])
    trail = AuditTrail(tables.table(pipeline.storage, tables.AUDIT_TRAIL))
    entries = sorted(trail.for_alert(tid, alert_id), key=lambda e: e.action_id)
    assert [(e.action_id, e.outcome) for e in entries] == [
        ("g-1", "done"), ("g-2", "conflict"), ("g-3", "done")]
    assert entries[2].before["assignedTo"] == "alice@mssp.test"
    assert (entries[2].after["status"], entries[2].after["determination"]) == (
        "Resolved", "NotMalicious")
    assert pipeline.ingestor.alerts.triage_fields(tid, alert_id)["status"] == "Resolved"
    pipeline.fetch(tenant)  # the next fetch confirms it, once
    assert pipeline.ingestor.alerts.triage_fields(tid, alert_id)["status"] == "Resolved"


def test_an_endpoint_alert_triaged_through_graph_shows_in_the_defender_api(
        graph_pipeline, triage):
    pipeline = graph_pipeline
    tenant, (alert_id,) = _graph_tenant(pipeline, "Graph Triage Endpoint", [ENDPOINT])
    applied = triage.apply(ALICE, tenant.tenant_id, alert_id, RESOLVE, action_id="e-1")
    assert applied.outcome == "done", applied.detail
    mde = next(a for a in pipeline.sim.alerts(tenant.tenant_id) if a["id"] == alert_id)
    assert (mde["status"], mde["classification"], mde["determination"]) == (
        "Resolved", "FalsePositive", "NotMalicious")
    assert mde["comments"][-1]["comment"] == RESOLVE.comment


def test_a_403_without_the_readwrite_role_makes_the_graph_tenant_read_only(
        graph_pipeline, triage):
    pipeline = graph_pipeline
    tenant, (alert_id,) = _graph_tenant(pipeline, "Graph Triage Read Only", [OFFICE],
                                        grant=READ_ONLY)
    applied = triage.apply(ALICE, tenant.tenant_id, alert_id, RESOLVE, action_id="r-1")
    assert applied.outcome == "refused"
    assert "SecurityAlert.ReadWrite.All" in applied.detail
    stored = pipeline.tenants.get(tenant.tenant_id)
    assert stored.access == "read" and "SecurityAlert.ReadWrite.All" in stored.access_reason
    assert _v2(pipeline, tenant.tenant_id, alert_id)["status"] == "new"


def test_the_graph_clients_writes_and_refusals(graph_pipeline):
    pipeline = graph_pipeline
    tenant, (alert_id,) = _graph_tenant(pipeline, "Graph Client Writes", [OFFICE])
    client = GraphSecurityClient(pipeline.simulator.base_url, 10,
                                 pipeline.settings.identity.ca_bundle)
    bearer = Tokens(pipeline.settings.identity).token(tenant.tenant_id, GRAPH_SCOPE)
    assert client.update_alert(bearer, alert_id, {"status": "inProgress"})["status"] == \
        "inProgress"
    assert client.add_comment(bearer, alert_id, "looking")[-1]["comment"] == "looking"
    assert client.get_alert(bearer, alert_id)["comments"][-1]["comment"] == "looking"
    with pytest.raises(Rejected):
        client.update_alert(bearer, alert_id, {"status": "Closed"})
    with pytest.raises(NotFound):
        client.update_alert(bearer, "nope", {"status": "new"})
    pipeline.sim.grant(tenant.tenant_id, pipeline.simulator.config.client_id, READ_ONLY)
    reader = Tokens(pipeline.settings.identity).token(tenant.tenant_id, GRAPH_SCOPE)
    with pytest.raises(Forbidden):
        client.add_comment(reader, alert_id, "no")


def test_bulk_on_a_graph_tenant_patches_each_alert_within_graphs_budget(graph_pipeline):
    from shared.services import bulk_hooks
    from shared.storage.bulk_jobs import BulkJobs
    from shared.storage.call_budget import CallBudget
    from shared.storage.queues import BulkQueue
    from shared.triage.bulk import BulkStores, BulkTriage, Target
    from tests.contract.conftest import fresh_table
    from tests.integration.test_bulk_triage_simulator import SimulatedTime
    from tests.triage_fakes import Queue, drain

    pipeline = graph_pipeline
    sim, settings = pipeline.sim, pipeline.settings
    tenant, ids = _graph_tenant(pipeline, "Graph Bulk", [OFFICE] * 100)
    tid = tenant.tenant_id
    clock, queue = SimulatedTime(sim), Queue()
    tokens = Tokens(settings.identity)
    service = BulkTriage(
        BulkStores(BulkJobs(fresh_table(pipeline.storage, "gbulk")),
                   CallBudget(fresh_table(pipeline.storage, "gbudget")), pipeline.tenants,
                   BulkQueue(queue)),
        DefenderClient(10, settings.identity.ca_bundle), bulk_hooks(pipeline.storage),
        token=lambda t, scope=None: tokens.token(t.tenant_id, scope),
        base=lambda t: settings.identity.api_base(t.region), clock=clock,
        graph=GraphSecurityClient(settings.fetch.graph_base_url, 10,
                                  settings.identity.ca_bundle))
    sim.fault(tid, "status", count=2, status=429, retry_after=40)
    sim.counters(reset=True)
    job = service.submit(ALICE, RESOLVE, [Target(tid, a) for a in ids])
    drain(queue, service.run, clock)
    status = service.status(job.job_id, limit=1000)
    assert status is not None and status.finished
    assert status.counts["done"] == 100, [i for i in status.items if i.outcome != "done"]
    for alert in (a for a in sim.graph_alerts(tid) if a["id"] in set(ids)):
        assert (alert["status"], alert["classification"]) == ("resolved", "falsePositive")
        assert [c["comment"] for c in alert["comments"]] == [RESOLVE.comment]
    assert sim.counters()["throttled"] == 2  # the two injected: never Graph's own limit
    (work,) = status.works
    assert work.calls >= 200  # a PATCH and a comment per alert
    entries = AuditTrail(tables.table(pipeline.storage, tables.AUDIT_TRAIL)).for_alert(
        tid, ids[-1])
    assert [(e.outcome, e.after.get("status")) for e in entries] == [("done", "Resolved")]
