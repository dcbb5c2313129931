"""Triage through the local host's keyed API, the simulator and Azurite: a named
automation key changes an alert once, the audit trail says so under the key's name, a
stale If-Match is a 412 with the current alert, a read-only tenant a 403 with the reason,
and bad input is refused before Defender is called."""

from __future__ import annotations

import hashlib
import logging

import pytest
import requests

from shared.model import Tenant
from tests.e2e.conftest import FUNCTION_KEY

SOAR_KEY = "soar-automation-key-0123456789"
READ_WRITE = {"https://api.securitycenter.microsoft.com": ["Alert.ReadWrite.All"]}


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {"MSSP_API_KEYS": f"soar:{hashlib.sha256(SOAR_KEY.encode()).hexdigest()}"}


@pytest.fixture
def triage_api(api, simulator, sim):
    base, session, repo = api
    session.headers["X-Api-Key"] = SOAR_KEY

    def tenant(name: str, access: str = "triage") -> tuple[str, list[dict]]:
        made = sim.add_tenant(name)
        sim.grant(made["id"], simulator.config.client_id, READ_WRITE)
        sim.generate(made["id"], 2)
        repo.add(Tenant(made["id"], name, access=access,
                        access_reason="" if access == "triage" else "granted read only"))
        return made["id"], sim.alerts(made["id"])

    return base, session, tenant


def _calls(sim, tenant_id: str) -> int:
    """Writes asked of Defender (the fan-out's fetches read meanwhile)."""
    counted = sim.counters()["tenants"][tenant_id]
    return counted["patches"] + counted["batch_updates"]


def test_a_named_key_resolves_an_alert_once_and_the_audit_says_who(triage_api, sim, caplog):
    caplog.set_level(logging.INFO)
    base, session, tenant = triage_api
    tenant_id, alerts = tenant("Triage API Co")
    alert = alerts[0]
    url = f"{base}/tenants/{tenant_id}/alerts/{alert['id']}"
    body = {"status": "Resolved", "classification": "FalsePositive",
            "determination": "NotMalicious", "comment": "closed by SOAR <playbook 7>"}
    headers = {"If-Match": alert["lastUpdateTime"], "Idempotency-Key": "run-42"}
    first = session.patch(url, json=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    result = first.json()
    assert (result["outcome"], result["repeated"]) == ("done", False)
    assert result["alert"]["status"] == "Resolved"
    again = session.patch(url, json=body, headers=headers, timeout=30)
    assert again.status_code == 200 and again.json()["repeated"] is True
    assert _calls(sim, tenant_id) == 1
    in_defender = next(a for a in sim.alerts(tenant_id) if a["id"] == alert["id"])
    assert [c["comment"] for c in in_defender["comments"]] == ["closed by SOAR <playbook 7>"]

    trail = session.get(f"{url}/audit", timeout=30).json()["entries"]
    assert len(trail) == 1
    assert trail[0]["actor"] == {"id": "soar", "name": "soar", "via": "api"}
    assert trail[0]["before"]["status"] == "New" and trail[0]["after"]["status"] == "Resolved"
    page = session.get(f"{base}/audit", params={"tenant": tenant_id, "actor": "soar"},
                       timeout=30).json()
    assert [e["action_id"] for e in page["entries"]] == [trail[0]["action_id"]]
    assert "continuation" not in page
    assert "triage by key soar" in caplog.text and SOAR_KEY not in caplog.text
    assert session.get(f"{base}/audit", params={"tenant": "x", "limit": "0"},
                       timeout=30).json()["errors"] == [
        {"field": "tenant", "message": "must be a tenant id (GUID)"},
        {"field": "limit", "message": "must be from 1 to 200"}]


def test_a_stale_if_match_is_a_412_with_the_current_alert(triage_api, sim):
    base, session, tenant = triage_api
    tenant_id, alerts = tenant("Triage Conflict Co")
    alert = alerts[0]
    sim.update_alert(tenant_id, alert["id"], {"assignedTo": "someone@customer.example"})
    r = session.patch(f"{base}/tenants/{tenant_id}/alerts/{alert['id']}",
                      json={"status": "Resolved"},
                      headers={"If-Match": alert["lastUpdateTime"]}, timeout=30)
    assert r.status_code == 412
    assert r.json()["outcome"] == "conflict"
    assert r.json()["alert"]["assignedTo"] == "someone@customer.example"
    assert next(a for a in sim.alerts(tenant_id)
                if a["id"] == alert["id"])["status"] == "New"


def test_a_read_only_tenant_answers_403_with_the_reason(triage_api, sim):
    base, session, tenant = triage_api
    tenant_id, alerts = tenant("Triage Read Only Co", access="read")
    r = session.patch(f"{base}/tenants/{tenant_id}/alerts/{alerts[0]['id']}",
                      json={"status": "Resolved"}, timeout=30)
    assert r.status_code == 403
    assert r.json()["outcome"] == "refused" and r.json()["detail"] == "granted read only"
    assert _calls(sim, tenant_id) == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"classification": "FalsePositive", "determination": "Malware"}, "determination"),
    ({"status": "Closed"}, "status"),
    ({"severity": "Low"}, "severity"),
    ({}, "body"),
    ({"comment": 7}, "comment"),
])
def test_bad_changes_are_refused_before_any_call(triage_api, sim, body, field):
    base, session, tenant = triage_api
    tenant_id, alerts = tenant(f"Triage Bad {field}")
    r = session.patch(f"{base}/tenants/{tenant_id}/alerts/{alerts[0]['id']}", json=body,
                      timeout=30)
    assert r.status_code == 400
    assert field in {e["field"] for e in r.json()["errors"]}
    assert _calls(sim, tenant_id) == 0


def test_the_automation_key_is_required_besides_the_function_key(triage_api):
    base, _, tenant = triage_api
    tenant_id, alerts = tenant("Triage Keys Co")
    url = f"{base}/tenants/{tenant_id}/alerts/{alerts[0]['id']}"
    for headers in ({"x-functions-key": FUNCTION_KEY},
                    {"x-functions-key": FUNCTION_KEY, "X-Api-Key": "wrong"}):
        r = requests.patch(url, json={"status": "Resolved"}, headers=headers, timeout=30)
        assert r.status_code == 401
        assert r.json()["errors"][0]["field"] == "X-Api-Key"
    r = requests.patch(url, json={"status": "Resolved"}, headers={"X-Api-Key": SOAR_KEY},
                       timeout=30)
    assert r.status_code == 401  # no function key: the host refuses first
    unknown = requests.patch(f"{base}/tenants/{tenant_id}/alerts/a%2Fb",
                             json={"status": "Resolved"},
                             headers={"x-functions-key": FUNCTION_KEY, "X-Api-Key": SOAR_KEY},
                             timeout=30)
    assert unknown.status_code in (400, 404)


def test_an_incident_patch_through_the_host_refuses_with_the_reason(triage_api, api, sim):
    """PATCH /api/tenants/{t}/incidents/{i}: checked before anything (an alert's status is
    not an incident's), a read-only graph tenant a 403 with the reason, an mde tenant a
    403 saying its incidents are not the hub's; each refusal in the audit trail under the
    incident."""
    base, session, tenant = triage_api
    tenant_id, _ = tenant("Incident API Read Only", access="read")
    url = f"{base}/tenants/{tenant_id}/incidents/17"
    bad = session.patch(url, json={"status": "New"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "status"
    refused = session.patch(url, json={"status": "Resolved", "comment": "x"},
                            headers={"Idempotency-Key": "inc-1"}, timeout=30)
    assert refused.status_code == 403, refused.text
    assert refused.json()["outcome"] == "refused" and "incident" in refused.json()
    assert "Defender for Endpoint" in refused.json()["detail"]  # an mde tenant
    assert _calls(sim, tenant_id) == 0
    page = session.get(f"{base}/audit", params={"tenant": tenant_id}, timeout=30).json()
    assert [(e["incident_id"], e["alert_id"], e["outcome"]) for e in page["entries"]] == [
        ("17", "", "refused")]
    assert session.patch(f"{base}/tenants/{tenant_id}/incidents/a%2Fb", json={
        "status": "Active"}, timeout=30).status_code in (400, 404)
    graph_tenant = sim.add_tenant("Incident API Graph Read Only")["id"]
    api[2].add(Tenant(graph_tenant, "Incident API Graph Read Only", access="read",
                      access_reason="granted read only", source="graph"))
    read_only = session.patch(f"{base}/tenants/{graph_tenant}/incidents/17",
                              json={"status": "Resolved"}, timeout=30)
    assert read_only.status_code == 403
    assert read_only.json()["detail"] == "granted read only"
