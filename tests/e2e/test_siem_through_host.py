"""Alerts to the SIEM through the local host: the feed function, the pull API over HTTP,
and the push timer delivering to a webhook."""

from __future__ import annotations

import json

import pytest
import requests

from shared.siem.senders import signature
from tests.e2e.conftest import PORTAL_KEY
from tests.e2e.test_ingest_through_host import _seed
from tests.integration.devhost_fixtures import wait_for

SECRET = "e2e-webhook-secret-0123456789"


@pytest.fixture
def hook(receiver):
    return receiver("/hook")


@pytest.fixture
def extra_settings(hook):
    return {"SIEM_OUTPUTS": json.dumps([{"name": "soc-hook", "type": "webhook",
                                         "url": hook.url, "batch_size": 25}]),
            "SIEM_WEBHOOK_SECRET": SECRET}


def _pull_all(base, session, **params):
    items, token = [], None
    while True:
        query = {**params, **({"continuation": token} if token else {})}
        response = session.get(f"{base}/siem/alerts", params=query, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["continuation"] == response.headers["X-Continuation"]
        items += body["items"]
        token = body["continuation"]
        if not body["more"]:
            return items, token


def test_alerts_reach_the_pull_api_and_a_webhook(api, simulator, sim, hook):
    base, session, repo = api
    tenant = _seed(sim, simulator, repo, "SIEM Flow Co", 40)
    items = wait_for(lambda: (lambda got: got if len(got) == 40 else None)(
        _pull_all(base, session, tenant=tenant, limit="15")[0]), timeout=60)
    assert {i["tenant_id"] for i in items} == {tenant}
    assert {i["tenant_name"] for i in items} == {"SIEM Flow Co"}
    assert len({i["event_id"] for i in items}) == 40
    assert all(i["alert_complete"] and "evidence" in i["alert"] for i in items)

    # NDJSON, filters, and the errors that name the field
    response = session.get(f"{base}/siem/alerts", params={"tenant": tenant, "format": "ndjson",
                                                          "severity": "High"}, timeout=10)
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in response.text.splitlines()]
    assert lines and all(x["alert"]["severity"] == "High" for x in lines)
    assert len(lines) == sum(1 for i in items if i["alert"]["severity"] == "High")
    bad = session.get(f"{base}/siem/alerts", params={"severity": "Critical"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "severity"
    assert session.get(f"{base}/siem/alerts", timeout=10,
                       headers={"x-functions-key": ""}).status_code == 401

    # the webhook got every version once (signed), through the timer and the deliver queue
    def delivered():
        got = [e for headers, body in hook.requests for e in json.loads(body)["events"]
               if e["tenant_id"] == tenant]
        return got if len(got) >= 40 else None
    got = wait_for(delivered, timeout=60)
    assert len({e["event_id"] for e in got}) == 40
    for headers, body in hook.requests:
        assert headers["X-Mssp-Hub-Signature"] == signature(
            SECRET, headers["X-Mssp-Hub-Timestamp"], body)
    outputs = session.get(f"{base}/siem/outputs", timeout=10).json()["outputs"]
    assert outputs[0]["name"] == "soc-hook" and outputs[0]["failures"] == 0
    portal = requests.get(f"{base}/portal/login", params={"key": PORTAL_KEY}, timeout=10)
    assert portal.status_code == 200 and 'data-output="soc-hook"' in portal.text
    health = session.get(f"{base}/health", timeout=10).json()
    assert health["siem_outputs"][0]["name"] == "soc-hook"
    assert health["siem_outputs"][0]["lag_seconds"] < 60
