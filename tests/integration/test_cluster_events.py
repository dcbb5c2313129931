"""Cluster events through the real queue and HTTP functions on Azurite: a ClusterEvent on
the notify queue emails an MSSP-wide rule's recipients once (aiosmtpd), its redelivery
sends nothing, a `grew` version one more; on the SIEM queue it enters the feed once and
the pull API returns it once, and never to a pull filtered to tenants; a tenant's rule
asking for clusters is refused (400 naming the field)."""

from __future__ import annotations

import json
import time
import uuid

import azure.functions as func
import pytest

from shared import services
from shared.model import Tenant
from shared.notify.clusters import cluster_link
from shared.notify.rules import GLOBAL, parse_rule
from shared.storage import tables
from shared.storage.tenants import TenantRepository
from tests.cluster_events import HOSTILE_URL, TENANTS, cluster_event
from tests.helpers import clear_service_caches
from tests.integration.test_notify import smtp  # noqa: F401  (the aiosmtpd fixture)


@pytest.fixture
def wired(storage_env, smtp, monkeypatch):  # noqa: F811
    """The functions' wiring on Azurite and the SMTP server."""
    _, server = smtp
    for key, value in {"AzureWebJobsStorage": storage_env.connection_string,
                       "MSSP_CLIENT_ID": "5a1c3b0e-6f0d-4e1a-9a52-3c0f5d9b7e21",
                       "MSSP_CLIENT_SECRET": "s3cret-value", "MAIL_TRANSPORT": "smtp",
                       "ONBOARDING_STATE_KEY": "test-state-key-0123456789-abcdefghijklmnop",
                       "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port),
                       "SMTP_SECURITY": "none", "MAIL_FROM": "alerts@mssp.example",
                       "PUBLIC_BASE_URL": "https://hub.mssp.example",
                       "SIEM_SETTLE_SECONDS": "5"}.items():
        monkeypatch.setenv(key, value)
    clear_service_caches()
    yield storage_env
    clear_service_caches()


def _unique(version: int = 1, tenants=None):
    """A cluster of this test alone (the queues' tables are shared by every test)."""
    return cluster_event(value=f"{HOSTILE_URL}#{uuid.uuid4().hex}", version=version,
                         tenants=tenants)


def test_a_cluster_on_the_notify_queue_emails_once_per_version(wired, smtp):  # noqa: F811
    from functions.notify import notify

    inbox, _ = smtp
    notifier = services.notifier()
    rule = notifier.save_rule(parse_rule({
        "name": "campaigns", "recipients": ["soc@mssp.example"], "on_new": False,
        "clusters": "new_or_grew"}, GLOBAL))
    try:
        new = _unique()
        body = new.to_message().encode()
        notify(func.QueueMessage(body=body))
        notify(func.QueueMessage(body=body))  # a redelivery sends nothing more
        mine = [m for m in inbox.messages if new.key in m.get_body(("plain",)).get_content()]
        assert len(mine) == 1 and inbox.envelopes[-1] == ["soc@mssp.example"]
        message = mine[0]
        assert "\n" not in message["Subject"] and message["Bcc"] is None
        html = message.get_body(("html",)).get_content()
        assert "<script>" not in html and "&lt;script&gt;" in html
        page = cluster_link("https://hub.mssp.example/api/portal", "url", new.indicator)
        assert f'href="{page}"' in html  # the portal's page of the cluster
        grew = cluster_event(value=new.indicator, version=2, tenants=TENANTS)
        assert grew.key == new.key
        notify(func.QueueMessage(body=grew.to_message().encode()))
        notify(func.QueueMessage(body=grew.to_message().encode()))
        mine = [m for m in inbox.messages if new.key in m.get_body(("plain",)).get_content()]
        assert len(mine) == 2 and "joined: Fabrikam" in mine[1]["Subject"]
        kept = notifier.outbox.recent(GLOBAL, limit=50)
        assert sum(1 for k in kept if k.event_id in (new.event_id, grew.event_id)) == 2
    finally:
        notifier.delete_rule(rule)


def test_a_tenant_rule_asking_for_clusters_is_refused_by_the_api(wired):
    from functions.notify import rules_tenant

    tenant = str(uuid.uuid4())
    TenantRepository(tables.table(wired, tables.TENANTS)).add(Tenant(tenant, "Customer"))
    body = {"name": "c", "recipients": ["contact@customer.example"], "clusters": "new"}
    response = rules_tenant(func.HttpRequest(
        "POST", f"/api/tenants/{tenant}/rules", body=json.dumps(body).encode(),
        route_params={"tenant_id": tenant}))
    assert response.status_code == 400
    assert [e["field"] for e in json.loads(response.get_body())["errors"]] == ["clusters"]
    assert services.notifier().rules.list(tenant) == []
    ok = rules_tenant(func.HttpRequest(
        "POST", f"/api/tenants/{tenant}/rules", body=json.dumps(
            {**body, "clusters": "off"}).encode(), route_params={"tenant_id": tenant}))
    assert ok.status_code == 201


def _pull(params: dict[str, str]) -> list[dict]:
    from functions.siem import siem_alerts

    items, token = [], ""
    while True:
        response = siem_alerts(func.HttpRequest(
            "GET", "/api/siem/alerts", body=b"",
            params={**params, "limit": "1000", **({"continuation": token} if token else {})}))
        assert response.status_code == 200, response.get_body()
        page = json.loads(response.get_body())
        items += page["items"]
        token = page["continuation"]
        if not page["more"]:
            return items


def test_a_cluster_on_the_siem_queue_is_pulled_once_and_never_by_tenant(wired):
    from functions.siem import siem_feed

    event = _unique()
    body = event.to_message().encode()
    siem_feed(func.QueueMessage(body=body))
    siem_feed(func.QueueMessage(body=body))  # redelivered: a no-op
    time.sleep(6)  # the settle
    found = [i for i in _pull({}) if i["event_id"] == event.event_id]
    assert len(found) == 1
    (pulled,) = found
    assert pulled["type"] == "cluster" and pulled["tenant_id"] is None
    assert pulled["cluster"]["indicator"] == event.indicator
    assert pulled["cluster"]["tenants"] == TENANTS[:2] and pulled["cluster"]["reach"] == 2
    assert [i for i in _pull({"severity": "High"}) if i["event_id"] == event.event_id]
    for tenant in TENANTS[:2]:
        assert not [i for i in _pull({"tenant": tenant["id"]}) if i["type"] == "cluster"]
