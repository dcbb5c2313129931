"""The admin API over HTTP: key-protected, JSON errors that name the field."""

from __future__ import annotations

import uuid

import pytest
import requests

from shared.model import Tenant, TenantStatus
from shared.storage import tables
from tests.e2e.conftest import FUNCTION_KEY
from tests.integration.devhost_fixtures import wait_for


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"display_name", "contact_email"}),
    ({"display_name": "A", "contact_email": "not-an-email"}, {"contact_email"}),
    ({"display_name": "A", "contact_email": "a@b.example\r\nBcc: x@y.example"},
     {"contact_email"}),
    ({"display_name": "A\x07", "contact_email": "a@b.example"}, {"display_name"}),
    ({"display_name": "A", "contact_email": "a@b.example", "expected_tenant": "not a domain"},
     {"expected_tenant"}),
    ({"display_name": "A", "contact_email": "a@b.example", "expires_in_days": 0},
     {"expires_in_days"}),
    ({"display_name": "A", "contact_email": "a@b.example", "admin": True}, {"admin"}),
    ([1, 2], {"body"}),
])
def test_bad_invitations_name_every_bad_field(api, body, fields):
    base, session, _ = api
    r = session.post(f"{base}/invitations", json=body, timeout=10)
    assert r.status_code == 400
    assert {e["field"] for e in r.json()["errors"]} == fields


def test_invitation_defaults_and_revocation(api):
    base, session, _ = api
    r = session.post(f"{base}/invitations", json={
        "display_name": "Fabrikam", "contact_email": "it@fabrikam.example",
        "expected_tenant": "FABRIKAM.example"}, timeout=10)
    assert r.status_code == 201
    invitation = r.json()
    assert invitation["expected_tenant"] == "fabrikam.example"
    from datetime import datetime

    days = (datetime.fromisoformat(invitation["expires_at"])
            - datetime.fromisoformat(invitation["created_at"])).days
    assert days == 7
    assert session.delete(f"{base}/invitations/{invitation['id']}",
                          timeout=10).json()["status"] == "revoked"
    assert requests.get(invitation["link"], timeout=10).status_code == 404
    assert session.delete(f"{base}/invitations/nope", timeout=10).status_code == 404


def test_keys_are_required(api):
    base, _, _ = api
    assert requests.get(f"{base}/tenants", timeout=10).status_code == 401
    assert requests.post(f"{base}/invitations", json={}, timeout=10).status_code == 401
    assert requests.get(f"{base}/tenants", headers={"x-functions-key": "wrong"},
                        timeout=10).status_code == 401


def test_list_pause_resume_rename_region(api):
    base, session, repo = api
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Admin Co"))
    listed = session.get(f"{base}/tenants", timeout=10).json()
    mine = next(t for t in listed if t["tenant_id"] == tenant_id)
    assert mine["status"] == "active" and "last_success_at" in mine["health"]

    assert session.post(f"{base}/tenants/{tenant_id}/pause",
                        timeout=10).json()["status"] == "paused"
    again = session.post(f"{base}/tenants/{tenant_id}/pause", timeout=10)
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "status"
    assert session.post(f"{base}/tenants/{tenant_id}/resume",
                        timeout=10).json()["status"] == "active"
    r = session.patch(f"{base}/tenants/{tenant_id}",
                      json={"display_name": "Admin Co 2", "region": "eu"}, timeout=10)
    assert (r.json()["display_name"], r.json()["region"]) == ("Admin Co 2", "eu")
    r = session.patch(f"{base}/tenants/{tenant_id}", json={"region": "mars", "x": 1},
                      timeout=10)
    assert r.status_code == 400 and {e["field"] for e in r.json()["errors"]} == {"region", "x"}
    assert session.post(f"{base}/tenants/{tenant_id}/explode",
                        timeout=10).json()["errors"][0]["field"] == "action"
    assert session.get(f"{base}/tenants/not-a-guid",
                       timeout=10).json()["errors"][0]["field"] == "tenant_id"
    assert session.get(f"{base}/tenants/{uuid.uuid4()}", timeout=10).status_code == 404
    revoked = str(uuid.uuid4())
    repo.add(Tenant(revoked, "Gone Co", status=TenantStatus.CONSENT_REVOKED))
    r = session.post(f"{base}/tenants/{revoked}/resume", timeout=10)
    assert r.status_code == 409 and "consent again" in r.json()["error"]


def test_offboard_keeps_or_deletes_alerts(api, simulator, sim, storage_env):
    base, session, repo = api
    alerts = tables.table(storage_env, tables.ALERTS)

    def stored(tenant_id: str) -> int:
        return sum(1 for _ in alerts.query_entities("PartitionKey eq @pk",
                                                    parameters={"pk": tenant_id}))

    kept, dropped = (sim.add_tenant(n, consent=[simulator.config.client_id])["id"]
                     for n in ("Keep Co", "Drop Co"))
    for tenant_id in (kept, dropped):
        sim.generate(tenant_id, 4, age_seconds=60)
        repo.add(Tenant(tenant_id, "x"))
    wait_for(lambda: stored(kept) == 4 and stored(dropped) == 4, timeout=30)
    bad = session.post(f"{base}/tenants/{kept}/offboard", json={"delete_alerts": "yes"},
                       timeout=10)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "delete_alerts"
    r = session.post(f"{base}/tenants/{kept}/offboard", json={"delete_alerts": False},
                     timeout=10)
    assert r.json()["status"] == "offboarded" and r.json()["alerts_deleted"] == 0
    r = session.post(f"{base}/tenants/{dropped}/offboard", json={"delete_alerts": True},
                     timeout=10)
    assert r.json()["alerts_deleted"] == 4
    assert stored(kept) == 4 and stored(dropped) == 0
    import time

    time.sleep(1)  # a fetch already running when the tenant was offboarded ends
    calls = sim.counters()["tenants"][kept]["calls"]
    time.sleep(2.5)  # a fan-out tick passes: offboarded tenants are not fetched
    assert sim.counters()["tenants"][kept]["calls"] == calls
    assert stored(dropped) == 0


def test_ops_command_line_tool(api, capsys):
    import json

    from tools.mssp import main

    base, _, _ = api
    url = base.rsplit("/api", 1)[0]
    assert main(["--url", url, "--key", FUNCTION_KEY, "invite", "CLI Co",
                 "it@cli.example", "--days", "3"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["link"].startswith(f"{url}/api/onboard/")
    assert main(["--url", url, "--key", FUNCTION_KEY, "invite", "CLI Co", "nope"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert error["errors"][0]["field"] == "contact_email"
    assert main(["--url", url, "--key", FUNCTION_KEY, "invitations"]) == 0
    assert any(i["id"] == created["id"] for i in json.loads(capsys.readouterr().out))
    assert main(["--url", url, "--key", "wrong", "tenants"]) == 1


def test_openapi_document_is_served(api):
    base, _, _ = api
    r = requests.get(f"{base}/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.json()["openapi"] == "3.1.0" and "/api/tenants" in r.json()["paths"]
