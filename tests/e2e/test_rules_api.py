"""The rules API over HTTP, and an alert travelling from Defender to an inbox."""

from __future__ import annotations

import uuid

import pytest
import requests

from shared.model import Tenant
from tests.e2e.conftest import FUNCTION_KEY
from tests.integration.devhost_fixtures import wait_for
from tests.integration.test_notify import Inbox, Server


@pytest.mark.parametrize(("body", "fields"), [
    ({"name": "x", "recipients": ["not-an-address"]}, {"recipients.0"}),
    ({"name": "x", "recipients": []}, {"recipients"}),
    ({"name": "x", "recipients": ["a@b.example"], "severities": ["Critical"]},
     {"severities.0"}),
    ({"name": "", "recipients": ["a@b.example"], "colour": "red"}, {"name", "colour"}),
    ({"name": "x", "recipients": ["a@b.example"], "on_new": False}, {"on_new"}),
    ({"name": "x", "recipients": ["a@b.example"], "tenants": [str(uuid.uuid4())]},
     {"tenants"}),
    ({"name": "x", "recipients": ["a@b.example"], "tenants": ["t"]}, {"tenants.0"}),
])
def test_bad_rules_name_every_bad_field(api, body, fields):
    base, session, repo = api
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Rules Co"))
    r = session.post(f"{base}/tenants/{tenant_id}/rules", json=body, timeout=10)
    assert r.status_code == 400
    assert {e["field"] for e in r.json()["errors"]} == fields


def test_a_tenant_scoped_call_cannot_reach_another_tenants_rules(api):
    base, session, repo = api
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    for tenant_id in (mine, theirs):
        repo.add(Tenant(tenant_id, "x"))
    created = session.post(f"{base}/tenants/{theirs}/rules", timeout=10, json={
        "name": "theirs", "recipients": ["a@b.example"]}).json()
    assert session.get(f"{base}/tenants/{mine}/rules", timeout=10).json() == []
    for method in ("get", "put", "delete"):
        r = session.request(method, f"{base}/tenants/{mine}/rules/{created['id']}",
                            json={"name": "hijack", "recipients": ["evil@x.example"]},
                            timeout=10)
        assert r.status_code == 404, method
    kept = session.get(f"{base}/tenants/{theirs}/rules/{created['id']}", timeout=10).json()
    assert kept["name"] == "theirs" and kept["recipients"][0]["address"] == "a@b.example"
    assert session.get(f"{base}/tenants/{uuid.uuid4()}/rules", timeout=10).status_code == 404


def test_updating_a_rule_keeps_when_recipients_were_added(api):
    base, session, repo = api
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "x"))
    rule = session.post(f"{base}/tenants/{tenant_id}/rules", timeout=10, json={
        "name": "r", "recipients": ["old@b.example"]}).json()
    updated = session.put(f"{base}/tenants/{tenant_id}/rules/{rule['id']}", timeout=10, json={
        "name": "r2", "recipients": ["old@b.example", "new@b.example"]}).json()
    added = {r["address"]: r["added_at"] for r in updated["recipients"]}
    assert added["old@b.example"] == rule["recipients"][0]["added_at"]
    assert added["new@b.example"] > added["old@b.example"]
    assert session.delete(f"{base}/tenants/{tenant_id}/rules/{rule['id']}",
                          timeout=10).status_code == 200


def test_from_defender_to_the_inbox(simulator, sim, storage_env, monkeypatch, request):
    inbox = Inbox()
    server = Server(inbox)
    server.start()
    request.addfinalizer(server.stop)
    monkeypatch.setenv("MAIL_TRANSPORT", "smtp")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SMTP_PORT", str(server.port))
    monkeypatch.setenv("SMTP_SECURITY", "none")
    host, repo = request.getfixturevalue("app_host")
    base = f"{host.http.base_url}/api"
    customer = sim.add_tenant("Inbox Co", consent=[simulator.config.client_id])
    repo.add(Tenant(customer["id"], "Inbox Co"))
    r = requests.post(f"{base}/tenants/{customer['id']}/rules", timeout=10,
                      headers={"x-functions-key": FUNCTION_KEY},
                      json={"name": "everything", "recipients": ["soc@mssp.example"]})
    assert r.status_code == 201
    made = sim.generate(customer["id"], 3)

    def alerts() -> list:  # ops notices of other tests also reach OPS_EMAIL here
        return [m for m in inbox.messages if m["X-MSSP-Hub-Event"]]

    wait_for(lambda: len(alerts()) == 3, timeout=45)
    subjects = " ".join(m["Subject"] for m in alerts())
    assert "Inbox Co" in subjects
    assert {m["X-MSSP-Hub-Event"].split(":")[1] for m in alerts()} == set(made["ids"])


def _stored_rule(storage, tenant_id: str, addresses: list[str]) -> str:
    """A rule row as an older version could write it (no address check)."""
    import json

    from shared.storage import tables

    rule_id = uuid.uuid4().hex
    tables.table(storage, "NotifyRules").upsert_entity({
        "PartitionKey": tenant_id, "RowKey": rule_id, "Body": json.dumps({
            "id": rule_id, "scope": tenant_id, "name": "stored",
            "recipients": [{"address": a, "added_at": "2020-01-01T00:00:00+00:00"}
                           for a in addresses]})})
    return rule_id


def test_send_a_test_email_for_a_rule(simulator, sim, storage_env, monkeypatch, request):
    inbox = Inbox()
    server = Server(inbox)
    server.start()
    request.addfinalizer(server.stop)
    for key, value in {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                       "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"}.items():
        monkeypatch.setenv(key, value)
    host, repo = request.getfixturevalue("app_host")
    base = f"{host.http.base_url}/api"
    headers = {"x-functions-key": FUNCTION_KEY}
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Test Mail Co"))
    # an ops notice goes to OPS_EMAIL through the digest timer, once
    from shared.tenants.ops_notices import OpsNotices

    subject = f"Tenant onboarded: Test Mail Co {uuid.uuid4().hex[:6]}"
    OpsNotices.on(storage_env, "ops@mssp.example").add("tenant_onboarded", tenant_id, subject,
                                                    "Test Mail Co is now active.")

    def ops_mails() -> list:
        return [m for m in inbox.messages if subject in m["Subject"]]

    wait_for(lambda: ops_mails(), timeout=30)
    import time
    time.sleep(5)  # two more timer runs
    assert len(ops_mails()) == 1 and ops_mails()[0]["To"] == "ops@mssp.example"
    rule = requests.post(f"{base}/tenants/{tenant_id}/rules", headers=headers, timeout=10,
                         json={"name": "r", "recipients": ["soc@mssp.example"]}).json()
    r = requests.post(f"{base}/tenants/{tenant_id}/rules/{rule['id']}/test", headers=headers,
                      timeout=10)
    assert r.json() == {"sent": True, "to": ["soc@mssp.example"], "refused": [],
                        "kept_locally": False}
    assert any("Test email for rule r" in m["Subject"] for m in inbox.messages)
    # rules stored by an older version may hold an address that is not one
    stored = _stored_rule(storage_env, tenant_id, ["x@example.com\n", "ok@example.com"])
    r = requests.post(f"{base}/tenants/{tenant_id}/rules/{stored}/test", headers=headers,
                      timeout=10)
    assert r.status_code == 200
    assert r.json()["to"] == ["ok@example.com"]
    assert r.json()["refused"][0]["address"] == "x@example.com\\n"
    only_bad = _stored_rule(storage_env, tenant_id, ["x@example.com\n"])
    r = requests.post(f"{base}/tenants/{tenant_id}/rules/{only_bad}/test", headers=headers,
                      timeout=10)
    assert r.status_code == 422 and r.json()["sent"] is False
    assert r.json()["errors"][0]["field"] == "recipients"
    server.stop()
    r = requests.post(f"{base}/tenants/{tenant_id}/rules/{rule['id']}/test", headers=headers,
                      timeout=30)
    assert r.status_code == 502 and r.json()["sent"] is False
