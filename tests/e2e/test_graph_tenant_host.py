"""One graph tenant end to end through the local host (the real function_app.py, Graph at
the simulator, a real rsyslog, an SMTP inbox, the portal in Chromium): alerts of four
products and their incidents are stored once, a rule on one product emails that product's
alerts only, the pull API and CEF name each alert's real product, the portal shows the
incidents with their alerts (and an alert page links back to its incident, where an
analyst assigns the incident to themselves through Graph), and a hostile v2 title stays
text everywhere."""

from __future__ import annotations

import json
import time
import uuid
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest

from shared.alerts.spelling import PRODUCTS as PRODUCT_NAMES
from shared.alerts.spelling import short_product
from shared.model import Tenant, TenantStatus
from shared.siem.cef import parse_cef
from shared.storage import tables
from tests.e2e.test_portal_browser import principal
from tests.e2e.test_siem_through_host import _pull_all
from tests.integration.devhost_fixtures import wait_for
from tests.integration.test_notify import Inbox, Server

OFFICE = "microsoftDefenderForOffice365"
PRODUCTS = ["microsoftDefenderForEndpoint", OFFICE, "microsoftDefenderForIdentity",
            "microsoftDefenderForCloudApps"]
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)> Phish"
HOSTILE_INCIDENT = "<img src=x onerror=alert(3)> & <b>Multi-stage</b>"
OUTPUT = "graph-cef-" + uuid.uuid4().hex[:6]
SOC = f"soc-{uuid.uuid4().hex[:6]}@mssp.example"  # this test's inbox only


@pytest.fixture
def inbox(monkeypatch, request) -> Inbox:
    box = Inbox()
    server = Server(box)
    server.start()
    request.addfinalizer(server.stop)
    for key, value in {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1",
                       "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none"}.items():
        monkeypatch.setenv(key, value)
    return box


@pytest.fixture
def extra_settings(simulator, rsyslog, inbox) -> dict[str, str]:
    return {"GRAPH_BASE_URL": simulator.base_url,
            "SIEM_OUTPUTS": json.dumps([{"name": OUTPUT, "type": "syslog",
                                         "host": "127.0.0.1", "port": rsyslog.tcp_port,
                                         "protocol": "tcp", "batch_size": 50}])}


def _rows(storage, table: str, tenant_id: str) -> list[dict]:
    client = tables.table(storage, table)
    return list(client.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id}))


def _alert_rows(storage, tenant_id: str) -> list[dict]:
    return [e for e in _rows(storage, tables.ALERTS, tenant_id) if "%~" not in e["RowKey"]]


def _incident_rows(storage, tenant_id: str) -> list[dict]:
    return [e for e in _rows(storage, tables.INCIDENTS, tenant_id)
            if e["RowKey"].startswith("i~")]


def _html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if part else ""


def test_a_graph_tenant_end_to_end(app_host, api, simulator, sim, storage_env, rsyslog, inbox,
                                   browser):
    base, session, repo = api
    tenant = sim.add_tenant("Graph E2E <Co>", consent=[simulator.config.client_id])["id"]
    # triage's roles before any token is cached (the host keeps a tenant's token)
    sim.grant(tenant, simulator.config.client_id, {"https://graph.microsoft.com": [
        "SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All"]})
    # paused until its alerts are in final shape: each alert is fetched in one version
    repo.add(Tenant(tenant, "Graph E2E <Co>", status=TenantStatus.PAUSED, source="graph"))
    rule = session.post(f"{base}/tenants/{tenant}/rules", timeout=10, json={
        "name": "Office only", "recipients": [SOC], "products": [OFFICE]})
    assert rule.status_code == 201, rule.text
    made = sim.generate_graph(tenant, 8, PRODUCTS, alerts_per_incident=2)
    ids, incident_ids = made["ids"], made["incident_ids"]
    assert len(ids) == 8 and len(incident_ids) == 4
    product_of = {alert_id: PRODUCTS[n % 4] for n, alert_id in enumerate(ids)}
    office = {i for i, p in product_of.items() if p == OFFICE}
    hostile = ids[1]
    assert product_of[hostile] == OFFICE
    sim.update_alert(tenant, hostile, {"title": HOSTILE})
    sim.update_incident(tenant, incident_ids[0], {"displayName": HOSTILE_INCIDENT})
    repo.set_status(tenant, TenantStatus.ACTIVE, "seeded by a test")

    # stored once: every alert a graph row, every incident a row, nothing more after ticks
    wait_for(lambda: len(_alert_rows(storage_env, tenant)) == 8
             and len(_incident_rows(storage_env, tenant)) == 4, timeout=40)
    time.sleep(5)  # a few more fetch ticks (every 2 s)
    rows = _alert_rows(storage_env, tenant)
    assert sorted(r["AlertId"] for r in rows) == sorted(ids)
    assert {r.get("Schema") for r in rows} == {"graph"}
    assert sorted(r["RowKey"][2:] for r in _incident_rows(storage_env, tenant)) == sorted(
        incident_ids)

    # the pull API: each alert once, with its real product; the hostile title as data
    def pulled():
        got = _pull_all(base, session, tenant=tenant)[0]
        return got if len(got) >= 12 else None
    everything = wait_for(pulled, timeout=30)
    items = [i for i in everything if i["type"] == "alert"]
    incidents = {i["incident_id"]: i for i in everything if i["type"] == "incident"}
    assert len(everything) == 12 and sorted(incidents) == sorted(incident_ids)
    assert {i["product"] for i in incidents.values()} == {"Microsoft Defender XDR"}
    assert incidents[incident_ids[0]]["incident"]["name"] == HOSTILE_INCIDENT
    assert sorted(i["alert"]["id"] for i in items) == sorted(ids)
    for i in items:
        assert i["schema"] == "graph"
        assert i["product"] == PRODUCT_NAMES[product_of[i["alert"]["id"]]]
    [item] = [i for i in items if i["alert"]["id"] == hostile]
    assert item["alert"]["title"] == HOSTILE
    raw = session.get(f"{base}/siem/alerts", params={"tenant": tenant}, timeout=10)
    assert raw.headers["Content-Type"].startswith("application/json")

    # CEF through rsyslog: the device product is the alert's product
    def cef():
        got: dict[str, list] = {}
        for line in rsyslog.lines():
            if tenant in line:
                header, ext = parse_cef(line)
                if ext.get("externalId") in product_of:
                    got.setdefault(ext["externalId"], []).append((header, ext))
        return got if len(got) == 8 else None
    wait_for(cef, timeout=40)
    time.sleep(3)  # more push ticks: still one line per alert
    lines = cef()
    assert lines and {len(x) for x in lines.values()} == {1}
    lines = {alert_id: x[0] for alert_id, x in lines.items()}
    for alert_id, (header, _ext) in lines.items():
        assert header[2] == short_product(PRODUCT_NAMES[product_of[alert_id]]), header
    assert lines[hostile][1]["msg"] == HOSTILE

    # email: the Office alerts only, the hostile title escaped
    def mails():
        got = [m for m in inbox.messages if m["To"] == SOC and m["X-MSSP-Hub-Event"]]
        return got if len(got) >= len(office) else None
    wait_for(mails, timeout=40)
    time.sleep(3)  # more digest ticks: nothing else reaches this rule's inbox
    got = [m for m in inbox.messages if m["To"] == SOC]
    assert all(m["X-MSSP-Hub-Event"] for m in got)
    assert sorted(m["X-MSSP-Hub-Event"].split(":")[1] for m in got) == sorted(office)
    [mail] = [m for m in got if m["X-MSSP-Hub-Event"].split(":")[1] == hostile]
    html = _html(mail)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html and "<img src=x" not in html

    # the portal in Chromium: the incidents, one incident's alerts, the hostile alert page
    portal = f"{app_host[0].http.base_url}/api/portal"
    dialogs: list[str] = []
    context = browser.new_context(extra_http_headers={"X-MS-CLIENT-PRINCIPAL": principal()})
    context.route("**/*", lambda route: route.continue_() if urlsplit(
        route.request.url).hostname in ("127.0.0.1", "localhost") else route.abort())
    try:
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        assert page.goto(f"{portal}/incidents?tenant={tenant}").status == 200
        listed = page.locator("#incidents tbody tr[data-incident]").evaluate_all(
            "rows => rows.map(r => r.dataset.incident)")
        assert sorted(listed) == sorted(incident_ids)
        row = page.locator(f"tr[data-incident='{incident_ids[0]}']")
        assert row.locator("a.incident-link").inner_text() == HOSTILE_INCIDENT
        assert row.locator("img, b").count() == 0
        first = incident_ids[0]  # the hostile alert's incident (alerts 0 and 1)
        page.locator(f"tr[data-incident='{first}'] a.incident-link").click()
        page.wait_for_load_state()
        assert urlsplit(page.url).path.endswith(f"/incidents/{tenant}/{first}")
        assert page.locator("#incident-name").inner_text() == HOSTILE_INCIDENT
        assert page.locator("#incident-name img, #incident-name b").count() == 0
        links = page.locator("#incident-alerts a.alert-link")
        hrefs = links.evaluate_all("as => as.map(a => a.getAttribute('href'))")
        assert sorted(urlsplit(h).path.rsplit("/", 1)[1] for h in hrefs) == sorted(ids[:2])
        assert all(f"/portal/tenants/{tenant}/alerts/" in h for h in hrefs)
        page.locator(f"#incident-alerts a.alert-link:text-is('{hostile}')").click()
        page.wait_for_load_state()
        assert urlsplit(page.url).path.endswith(f"/alerts/{hostile}")
        assert page.locator("#alert-title").inner_text() == HOSTILE
        assert page.locator("#alert-title img, #alert-title script").count() == 0
        assert "&lt;script&gt;" in page.content()
        # the alert page links to its stored incident; from there, act on the incident
        link = page.locator("#incident-link")
        assert urlsplit(link.get_attribute("href")).path.endswith(
            f"/incidents/{tenant}/{first}")
        repo.set_access(tenant, "triage", "")
        link.click()
        page.wait_for_load_state()
        assert page.locator("#actions-blocked").count() == 0
        page.locator("#assign").click()  # to me
        page.wait_for_load_state()
        assert page.locator("#outcome").inner_text().startswith("Done"), \
            page.locator("#outcome").inner_text()
        assert page.locator("#i-assigned").inner_text() == "analyst@mssp.example"
        in_graph = next(i for i in sim.incidents(tenant) if i["id"] == first)
        assert in_graph["assignedTo"] == "analyst@mssp.example"
        audit = page.locator("#incident-audit tbody tr").all_inner_texts()
        assert len(audit) == 1 and "done" in audit[0]
        page.wait_for_timeout(300)
        assert dialogs == []
    finally:
        context.close()
