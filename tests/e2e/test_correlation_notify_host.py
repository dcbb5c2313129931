"""Issue 22's test through the whole local host (the real function_app.py, Azurite, the
simulator, an SMTP inbox, a real rsyslog, the portal in Chromium): four customers' alerts
sharing indicators, two fetched from Defender for Endpoint's API and two from Graph, go
through fetch, relay and correlate (tests/e2e/correlation_seed.py). An MSSP-wide rule made
through the rules API with `clusters: new_or_grew` gets exactly one email per cluster
version; a fifth customer joining emails once more, naming it; the correlate message
redelivered (and the fetch repeated) emails nothing and indexes nothing twice; the pull
API returns each cluster version once; a hostile indicator (a URL with `<script>`, a
`javascript:` URL in the evidence, markup in names) is escaped in the email (HTML and
text), the CEF line rsyslog received and the pull API's JSON, and inert in the portal."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from html import unescape
from urllib.parse import urlsplit

import pytest

from shared import timefmt
from shared.ingest.events import event_message, tracked
from shared.model import TenantStatus
from shared.siem.cef import parse_cef
from shared.storage import tables
from tests.e2e import correlation_seed
from tests.e2e.test_portal_browser import principal
from tests.e2e.test_siem_through_host import _pull_all
from tests.integration.devhost_fixtures import wait_for
from tests.integration.test_notify import Inbox, Server

TOOL = correlation_seed.new_tool()
SOC = f"campaigns-{uuid.uuid4().hex[:6]}@mssp.example"  # this test's inbox only
OUTPUT = "corr-cef-" + uuid.uuid4().hex[:6]
JS_URL = "javascript:alert(document.domain)//<script>alert(3)</script>"
ECHO = "Echo <i>Co</i>"
REACH = {"sha256": 4, "sha1": 3, "ip": 3, "url": 2, "domain": 2, "file_name": 2}


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
    return {**correlation_seed.settings(TOOL), "GRAPH_BASE_URL": simulator.base_url,
            "SIEM_OUTPUTS": json.dumps([{"name": OUTPUT, "type": "syslog",
                                         "host": "127.0.0.1", "port": rsyslog.tcp_port,
                                         "protocol": "tcp", "batch_size": 50}])}


def _schema(storage, tenant_id: str) -> str:
    """The API the tenant's one stored alert came from."""
    (row,) = [e for e in tables.table(storage, tables.ALERTS).query_entities(
        "PartitionKey eq @pk", parameters={"pk": tenant_id}) if "%~" not in e["RowKey"]]
    return row.get("Schema") or "mde"


def _parts(message: EmailMessage) -> tuple[str, str]:
    return (message.get_body(("plain",)).get_content(),
            message.get_body(("html",)).get_content())


def test_clusters_email_once_per_version_and_stay_inert_everywhere(
        app_host, api, sim, simulator, storage_env, rsyslog, inbox, browser,
        global_rules_removed):
    base, session, repo = api
    since = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rule = session.post(f"{base}/rules", timeout=10, json={
        "name": "Campaigns", "recipients": [SOC], "on_new": False,
        "clusters": "new_or_grew"})
    assert rule.status_code == 201, rule.text
    seeded = correlation_seed.seed(
        app_host, sim, simulator, base, TOOL, sources=("mde", "graph", "mde", "graph"),
        extra_evidence=({"entityType": "Url", "url": JS_URL},))
    found, v = seeded["indicators"], seeded["values"]
    alpha = seeded["tenants"][0]
    prefixes = {f"cluster:{i.key}:": kind for kind, i in found.items()}

    def cluster(kind: str) -> dict:
        answer = session.get(f"{base}/clusters/{kind}", params={"value": found[kind].value},
                             timeout=10)
        assert answer.status_code == 200, (kind, answer.text)
        return answer.json()

    def mails() -> list[EmailMessage]:
        return [m for m in inbox.messages if m["To"] == SOC]

    def event_ids() -> list[str]:
        return [m["X-MSSP-Hub-Event"] for m in mails()]

    # one email per cluster version: a cluster of n customers has versions 1 .. n-1
    total = sum(n - 1 for n in REACH.values())
    wait_for(lambda: len(mails()) >= total, timeout=90, every=0.5)
    time.sleep(5)  # more ticks: nothing else comes
    ids = event_ids()
    assert all(i.rsplit(":", 1)[0] + ":" in prefixes for i in ids), ids
    assert len(ids) == len(set(ids)) == total
    for kind, reach in REACH.items():
        shown = cluster(kind)
        assert shown["reach"] == reach and shown["version"] == reach - 1, kind
        assert sorted(i for i in ids if i.startswith(f"cluster:{found[kind].key}:")) == [
            f"cluster:{found[kind].key}:{n}" for n in range(1, reach)]
    assert {t["tenant_id"] for t in cluster("sha256")["tenants"]} == set(seeded["tenants"])
    assert [_schema(storage_env, t) for t in seeded["tenants"]] == [
        "mde", "graph", "mde", "graph"]  # each fetched from its own API

    # the hostile URL's email: escaped in HTML, one line a value in text, no foreign link
    [url_mail] = [m for m in mails()
                  if m["X-MSSP-Hub-Event"] == f"cluster:{found['url'].key}:1"]
    text, html = _parts(url_mail)
    assert found["url"].value in text and "%3Cscript%3E" in found["url"].value
    assert "\n" not in url_mail["Subject"] and "<script" not in url_mail["Subject"]
    for live in ("<script", "<b>Corp", "<img", "javascript:"):
        assert live not in html, live
    assert "javascript:" not in text and "<script" not in text
    assert "Alpha &lt;b&gt;Corp&lt;/b&gt;" in html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(h.startswith(app_host[0].http.base_url) for h in hrefs), hrefs
    link = unescape(hrefs[0])
    assert link in text and urlsplit(link).path.endswith("/api/portal/clusters/url")

    # a fifth customer (from Graph) with the file: one email more, naming it
    echo, _ = correlation_seed.add_customer(app_host, sim, simulator, ECHO, [
        {"entityType": "File", "fileName": "drop.exe", "filePath": "C:\\Users\\Public",
         "sha256": v["sha256"], "detectionStatus": "Detected"}], source="graph")
    repo.set_status(echo, TenantStatus.ACTIVE, "seeded by a test")
    wait_for(lambda: len(mails()) > total, timeout=60, every=0.5)
    time.sleep(5)
    [joined] = mails()[total:]
    assert joined["X-MSSP-Hub-Event"] == f"cluster:{found['sha256'].key}:4"
    assert f"joined: {ECHO}" in joined["Subject"] and "seen at 5 customers" in joined["Subject"]
    text, html = _parts(joined)
    assert ECHO in text and "Echo &lt;i&gt;Co&lt;/i&gt;" in html and "<i>Co" not in html
    assert cluster("sha256")["reach"] == 5

    # the correlate message redelivered, and the fetch repeated: nothing twice
    doc = next(a for a in sim.alerts(alpha) if a["id"] == seeded["alerts"][alpha])
    version = timefmt.normalize(doc["lastUpdateTime"])
    body = event_message(alpha, seeded["names"][alpha], doc, version, None,
                         tracked(doc, version)).decode()
    queue = tables.queue(storage_env, tables.CORRELATE_QUEUE)
    queue.send_message(body)
    queue.send_message(body)
    for tenant in [*seeded["tenants"], echo]:
        sim.touch_alerts(tenant)
    wait_for(lambda: not list(queue.peek_messages(max_messages=32)), timeout=30)
    wait_for(lambda: len([i for i in _pull_all(base, session, tenant=echo)[0]
                          if i["type"] == "alert"]) == 2, timeout=30)  # fetched again
    time.sleep(5)  # and correlated
    assert len(mails()) == total + 1
    lookup = session.get(f"{base}/indicators/lookup", params={"value": v["sha256"]},
                         timeout=10).json()
    assert len(lookup["sightings"]) == 5
    assert cluster("sha256")["version"] == 4

    # the pull API: each cluster version once, the indicator as data
    def pulled() -> dict[str, list[dict]]:
        got: dict[str, list[dict]] = {}
        response = session.get(f"{base}/siem/alerts", params={"since": since}, timeout=10)
        assert response.headers["Content-Type"].startswith("application/json")
        for item in _pull_all(base, session, since=since)[0]:
            if item["type"] == "cluster" and item["event_id"].rsplit(":", 1)[0] + ":" \
                    in prefixes:
                got.setdefault(item["event_id"], []).append(item)
        return got if len(got) >= total + 1 else None
    items = wait_for(pulled, timeout=30)
    assert sorted(items) == sorted(event_ids()) and {len(x) for x in items.values()} == {1}
    [url_item] = items[f"cluster:{found['url'].key}:1"]
    assert url_item["cluster"]["indicator"] == found["url"].value
    assert {t["name"] for t in url_item["cluster"]["tenants"]} == {
        "Alpha <b>Corp</b>", "Bravo"}  # JSON carries the names as data
    assert "javascript:" not in json.dumps(items)

    # CEF through rsyslog: a line per version, the values escaped and parsed back intact
    def cef() -> dict[str, list[tuple[list[str], dict[str, str]]]]:
        got: dict[str, list] = {}
        for line in rsyslog.lines():
            if "|cluster|" not in line:
                continue
            header, ext = parse_cef(line)
            if ext.get("cs6", "").rsplit(":", 1)[0] + ":" in prefixes:
                got.setdefault(ext["cs6"], []).append((line, header, ext))
        return got if len(got) >= total + 1 else None
    lines = wait_for(cef, timeout=40)
    time.sleep(3)
    lines = cef()
    assert sorted(lines) == sorted(event_ids()) and {len(x) for x in lines.values()} == {1}
    [(line, header, ext)] = lines[f"cluster:{found['url'].key}:1"]
    assert header[4] == "cluster" and ext["cs2"] == found["url"].value
    assert ext["request"] == found["url"].value and "<script" not in line
    assert "javascript:" not in line and "\n" not in line

    # the portal in Chromium: the cluster's page and Alpha's alert page, all text
    dialogs: list[str] = []
    context = browser.new_context(extra_http_headers={"X-MS-CLIENT-PRINCIPAL": principal()})
    context.route("**/*", lambda route: route.continue_() if urlsplit(
        route.request.url).hostname in ("127.0.0.1", "localhost") else route.abort())
    try:
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        assert page.goto(link).status == 200  # the email's link to the cluster's page
        assert page.locator("#c-reach").inner_text() == "2"
        assert "%3Cscript%3E" in page.locator("body").inner_text()
        assert page.locator("#cluster-tenants :is(b, img, script)").count() == 0
        assert "Alpha <b>Corp</b>" in page.locator("#cluster-tenants").inner_text()
        page.locator(f'#cluster-tenants tr[data-tenant="{alpha}"] a.alert-link').click()
        page.wait_for_url(re.compile(rf"/tenants/{alpha}/alerts/"))
        assert JS_URL in page.locator("body").inner_text()  # shown as text
        hrefs = page.locator("a[href]").evaluate_all(
            "as => as.map(a => a.getAttribute('href'))")
        assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")]
        assert page.locator("#alert-title img").count() == 0
        page.wait_for_timeout(500)
    finally:
        context.close()
    assert not dialogs, dialogs
