"""Teams and Slack channels through the real function_app on the local host: the rules
API takes channels by app-setting name (never a URL back), a test post goes, and an alert
from the simulator reaches both channels once each through notify-events and
notify-channels (the local receiver, devtools/webhook_receiver.py: a post it refuses as the
platform would fails the test)."""

from __future__ import annotations

import json
import time

import pytest

from shared.model import Tenant
from tests.integration.channel_fixtures import checked_receiver, taken
from tests.integration.devhost_fixtures import wait_for


@pytest.fixture
def receiver():
    with checked_receiver() as found:
        yield found


@pytest.fixture
def extra_settings(receiver) -> dict[str, str]:
    return {"TEAMS_E2E_HOOK": receiver.url("teams", "e2e"),
            "SLACK_E2E_HOOK": receiver.url("slack", "e2e"),
            "SLACK_ELSEWHERE": "https://example.com/services/x"}


CHANNELS = [{"type": "teams", "name": "soc-teams", "webhook_setting": "TEAMS_E2E_HOOK"},
            {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_E2E_HOOK"}]


def test_channels_through_the_api_and_an_alert_posted_once_on_each(simulator, sim, api,
                                                                  receiver):
    base, session, repo = api
    customer = sim.add_tenant("Channel Co", consent=[simulator.config.client_id])
    tenant_id = customer["id"]
    repo.add(Tenant(tenant_id, "Channel Co"))
    bad = session.post(f"{base}/tenants/{tenant_id}/rules", timeout=10, json={
        "name": "x", "recipients": [], "channels": [
            {"type": "slack", "name": "s", "webhook_setting": "SLACK_ELSEWHERE"},
            {"type": "slack", "name": "t", "webhook_setting": "NOT_SET_ANYWHERE"}]})
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"channels.0.webhook_setting",
                                                         "channels.1.webhook_setting"}
    assert "example.com" not in bad.text
    r = session.post(f"{base}/tenants/{tenant_id}/rules", timeout=10,
                     json={"name": "channels", "recipients": [], "channels": CHANNELS})
    assert r.status_code == 201 and r.json()["channels"] == CHANNELS
    assert receiver.base_url not in r.text
    rule_id = r.json()["id"]
    test = session.post(f"{base}/tenants/{tenant_id}/rules/{rule_id}/channels/soc-slack/test",
                        timeout=30)
    assert test.status_code == 200
    assert test.json() == {"sent": True, "channel": "soc-slack",
                           "webhook": "http://127.0.0.1/…/****", "error": "",
                           "retry_after": None}
    assert session.post(f"{base}/tenants/{tenant_id}/rules/{rule_id}/channels/nope/test",
                        timeout=10).status_code == 404
    made = sim.generate(tenant_id, 2)
    wait_for(lambda: len(taken(receiver, "teams", "e2e")) == 2
             and len(taken(receiver, "slack", "e2e")) == 3, timeout=60)
    shown = json.dumps(taken(receiver, "teams", "e2e"))
    assert all(alert_id in shown for alert_id in made["ids"])
    assert "Channel Co" in shown
    time.sleep(3)  # nothing more comes (no second post per alert version)
    assert len(receiver.posts("teams", "e2e")) == 2
    assert len(receiver.posts("slack", "e2e")) == 3


def test_a_refusing_webhook_through_the_api_and_health(simulator, sim, api, receiver):
    """A test post the platform refuses is a 502 naming its answer (never the URL); the
    channel is then failing, which /api/health says, until a test post goes again."""
    base, session, repo = api
    customer = sim.add_tenant("Refusing Co", consent=[simulator.config.client_id])
    repo.add(Tenant(customer["id"], "Refusing Co"))
    r = session.post(f"{base}/tenants/{customer['id']}/rules", timeout=10,
                     json={"name": "refused", "recipients": [], "channels": CHANNELS})
    assert r.status_code == 201
    test_url = f"{base}/tenants/{customer['id']}/rules/{r.json()['id']}/channels/soc-teams/test"
    receiver.answer("teams", "e2e", 404)  # the flow was deleted
    test = session.post(test_url, timeout=30)
    assert test.status_code == 502, test.text
    assert test.json()["webhook"] == "http://127.0.0.1/…/****"
    assert test.json()["error"].startswith('404 {"error": {"code": "WorkflowNotFound"')
    assert receiver.base_url not in test.text

    def failing() -> list[str]:
        health = session.get(f"{base}/health", timeout=30).json()
        return [x["message"] for x in health["reasons"] if x["code"] == "channels_failing"]

    [reason] = failing()
    assert "soc-teams (404)" in reason and receiver.base_url not in reason
    receiver.answer("teams", "e2e", None)  # fixed
    assert session.post(test_url, timeout=30).json()["sent"] is True
    assert not any("soc-teams" in m for m in failing())
