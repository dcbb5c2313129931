"""Triage through the simulator over HTTPS and Azurite: the change reaches Defender, the
audit trail has one entry, the next fetch stores the new version; a stale page gets a
conflict; a read-only grant's 403 makes the tenant read-only; a write is not retried on
a 5xx."""

from __future__ import annotations

import pytest

from shared.microsoft.defender import (
    DefenderClient,
    DefenderError,
    Forbidden,
    NotFound,
    Rejected,
    Throttled,
)
from shared.microsoft.identity import Tokens
from shared.services import triage_on
from shared.storage import tables
from shared.storage.audit import AuditTrail
from shared.triage.model import Actor, Change

READ_WRITE = {"https://api.securitycenter.microsoft.com": ["Alert.ReadWrite.All"]}
ALICE = Actor("oid-alice", "Alice", "entra")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="benign admin script")


@pytest.fixture
def triage(pipeline):
    return triage_on(pipeline.settings, Tokens(pipeline.settings.identity),
                     DefenderClient(10, pipeline.settings.identity.ca_bundle))


def _tenant(pipeline, name, grant=READ_WRITE, access="triage"):
    tenant = pipeline.add_tenant(name, alerts=3)
    pipeline.sim.grant(tenant.tenant_id, pipeline.simulator.config.client_id, grant)
    pipeline.tenants.set_access(tenant.tenant_id, access, "")
    pipeline.fetch(tenant)
    return tenant


def test_a_change_reaches_defender_is_audited_once_and_fetched_back(pipeline, triage):
    tenant = _tenant(pipeline, "Triage Integration")
    alert = pipeline.sim.alerts(tenant.tenant_id)[0]
    applied = triage.apply(ALICE, tenant.tenant_id, alert["id"], RESOLVE,
                           seen_version=alert["lastUpdateTime"], action_id="req-1")
    assert applied.outcome == "done", applied.detail
    in_defender = next(a for a in pipeline.sim.alerts(tenant.tenant_id)
                       if a["id"] == alert["id"])
    assert (in_defender["status"], in_defender["determination"]) == ("Resolved",
                                                                      "NotMalicious")
    assert in_defender["comments"][-1]["comment"] == "benign admin script"
    assert triage.apply(ALICE, tenant.tenant_id, alert["id"], RESOLVE,
                        action_id="req-1").repeated
    assert len(pipeline.sim.alerts(tenant.tenant_id)[0]["comments"]) == len(
        in_defender["comments"])
    trail = AuditTrail(tables.table(pipeline.storage, tables.AUDIT_TRAIL))
    entries = trail.for_alert(tenant.tenant_id, alert["id"])
    assert [(e.action_id, e.outcome) for e in entries] == [("req-1", "done")]
    assert entries[0].before["status"] == "New"
    assert entries[0].after["status"] == "Resolved"
    pipeline.fetch(tenant)
    assert pipeline.ingestor.alerts.triage_fields(tenant.tenant_id, alert["id"])[
        "status"] == "Resolved"


def test_a_stale_page_is_a_conflict_and_defender_keeps_its_change(pipeline, triage):
    tenant = _tenant(pipeline, "Triage Conflict")
    alert = pipeline.sim.alerts(tenant.tenant_id)[0]
    pipeline.sim.update_alert(tenant.tenant_id, alert["id"], {"status": "InProgress"})
    applied = triage.apply(ALICE, tenant.tenant_id, alert["id"], RESOLVE,
                           seen_version=alert["lastUpdateTime"])
    assert applied.outcome == "conflict"
    assert applied.alert["status"] == "InProgress"
    assert next(a for a in pipeline.sim.alerts(tenant.tenant_id)
                if a["id"] == alert["id"])["status"] == "InProgress"


def test_a_read_only_grant_answers_403_and_the_tenant_becomes_read_only(pipeline, triage):
    tenant = _tenant(pipeline, "Triage Read Only",
                     grant={"https://api.securitycenter.microsoft.com": ["Alert.Read.All"]})
    alert = pipeline.sim.alerts(tenant.tenant_id)[0]
    applied = triage.apply(ALICE, tenant.tenant_id, alert["id"], RESOLVE)
    assert applied.outcome == "refused" and "Alert.ReadWrite.All" in applied.detail
    stored = pipeline.tenants.get(tenant.tenant_id)
    assert (stored.access, stored.access_reason) == ("read", applied.detail)
    assert pipeline.sim.alerts(tenant.tenant_id)[0]["status"] == "New"


def test_a_write_is_not_retried_on_a_server_error(pipeline, triage):
    tenant = _tenant(pipeline, "Triage 5xx")
    alert = pipeline.sim.alerts(tenant.tenant_id)[0]
    client = DefenderClient(10, pipeline.settings.identity.ca_bundle)
    bearer = Tokens(pipeline.settings.identity).token(tenant.tenant_id)
    pipeline.sim.fault(tenant.tenant_id, "status", count=2, status=503)
    with pytest.raises(DefenderError) as raised:
        client.update_alert(pipeline.settings.identity.api_base(), bearer, alert["id"],
                            {"comment": "once"})
    assert raised.value.status == 503 and raised.value.transient
    assert pipeline.sim.tenant(tenant.tenant_id)["faults_pending"] == 1  # one call only
    pipeline.sim.clear_faults(tenant.tenant_id)
    applied = triage.apply(ALICE, tenant.tenant_id, alert["id"], Change(comment="once"))
    assert applied.outcome == "done"
    assert [c["comment"] for c in applied.alert["comments"]].count("once") == 1


def test_the_clients_writes_and_how_defender_refuses_them(pipeline):
    tenant = _tenant(pipeline, "Triage Client")
    ids = [a["id"] for a in pipeline.sim.alerts(tenant.tenant_id)]
    client = DefenderClient(10, pipeline.settings.identity.ca_bundle)
    base = pipeline.settings.identity.api_base()
    bearer = Tokens(pipeline.settings.identity).token(tenant.tenant_id)
    assert client.get_alert(base, bearer, ids[0], expand_evidence=True)["evidence"]
    assert client.batch_update(base, bearer, ids, {"status": "InProgress"}) is None
    assert {a["status"] for a in pipeline.sim.alerts(tenant.tenant_id)} == {"InProgress"}
    with pytest.raises(Rejected) as rejected:
        client.batch_update(base, bearer, [*ids, "da404_1"], {"status": "Resolved"})
    assert "da404_1" in str(rejected.value) and not rejected.value.transient
    with pytest.raises(Rejected) as rejected:
        client.update_alert(base, bearer, ids[0], {"classification": "FalsePositive",
                                                   "determination": "Malware"})
    assert "determination" in str(rejected.value)
    with pytest.raises(NotFound):
        client.update_alert(base, bearer, "da404/../1", {"status": "New"})
    with pytest.raises(NotFound):
        client.get_alert(base, bearer, "da404_1")
    pipeline.sim.fault(tenant.tenant_id, "status", status=429, retry_after=17)
    with pytest.raises(Throttled) as throttled:
        client.update_alert(base, bearer, ids[0], {"comment": "x"})
    assert throttled.value.retry_after == 17
    pipeline.sim.grant(tenant.tenant_id, pipeline.simulator.config.client_id,
                       {"https://api.securitycenter.microsoft.com": ["Alert.Read.All"]})
    read_only = Tokens(pipeline.settings.identity).token(tenant.tenant_id)
    with pytest.raises(Forbidden):
        client.batch_update(base, read_only, ids, {"status": "Resolved"})
