"""The local outbox in headless Chromium: with no mail transport each email is kept
locally and shown as it would arrive, its HTML in a sandboxed frame that runs no script
and loads nothing (an alert title carrying markup, and a hostile HTML body)."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import requests

from shared.model import Tenant
from shared.storage import tables
from shared.storage.mail_outbox import KeptEmail, MailOutbox
from tests.conftest import ROOT
from tests.e2e.conftest import FUNCTION_KEY
from tests.e2e.test_portal_browser import principal
from tests.integration.devhost_fixtures import wait_for

ARTIFACTS = ROOT / "test-artifacts" / "outbox"
TITLE = "<script>alert('title')</script><img src=x onerror=alert('img')> on a server"


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {"MAIL_TRANSPORT": "none"}


def test_the_outbox_shows_each_email_as_it_would_arrive_and_runs_nothing(
        app_host, simulator, sim, storage_env, browser):
    host, repo = app_host
    base = host.http.base_url
    tenant_id = sim.add_tenant("Outbox Co", consent=[simulator.config.client_id])["id"]
    repo.add(Tenant(tenant_id, "Outbox Co"))
    rule = requests.post(f"{base}/api/tenants/{tenant_id}/rules", timeout=10,
                         headers={"x-functions-key": FUNCTION_KEY},
                         json={"name": "Everything", "recipients": ["soc@mssp.example"]})
    assert rule.status_code == 201, rule.text
    (alert_id,) = sim.generate(tenant_id, 1)["ids"]
    sim.update_alert(tenant_id, alert_id, {"title": TITLE, "severity": "High"})
    outbox = MailOutbox(tables.table(storage_env, tables.MAIL_OUTBOX))
    wait_for(lambda: any(TITLE in m.subject for m in outbox.recent(tenant_id)), timeout=60)
    (kept,) = [m for m in outbox.recent(tenant_id) if TITLE in m.subject]
    assert kept.state == "kept locally" and "&lt;script&gt;" in kept.html

    # the rule test endpoint keeps what it would have sent, too
    tested = requests.post(f"{base}/api/tenants/{tenant_id}/rules/{rule.json()['id']}/test",
                           headers={"x-functions-key": FUNCTION_KEY}, timeout=10)
    assert tested.status_code == 200 and tested.json()["kept_locally"] is True
    assert any("Test email for rule Everything" in m.subject for m in outbox.recent(tenant_id))

    # and an HTML body nobody escaped: whatever it tries, nothing runs, nothing loads
    beacon = f"{base}/api/health?beacon=1"
    outbox.keep(KeptEmail(
        tenant_id=tenant_id, at=datetime.now(UTC), state="kept locally",
        subject="Hostile body", to="soc@mssp.example", text="plain", rule="r-hostile",
        html=f"<html><head><title>x</title></head><body><p id=p>hostile</p>"
             f"<script>parent.document.title='pwned';fetch('{beacon}&f=1')</script>"
             f"<img src=x onerror=\"parent.document.title='pwned'\">"
             f"<img src='{beacon}&img=1'><img src='https://remote.example/pixel.png'>"
             f"<link rel=stylesheet href='https://remote.example/a.css'></body></html>"))

    context = browser.new_context(extra_http_headers={"X-MS-CLIENT-PRINCIPAL": principal()})
    requested: list[str] = []
    context.on("request", lambda r: requested.append(r.url))
    context.route("**/*", lambda route: route.continue_() if urlsplit(
        route.request.url).hostname in ("127.0.0.1", "localhost") else route.abort())
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        response = page.goto(f"{base}/api/portal/outbox")
        assert response.status == 200
        assert "script-src" not in response.headers["content-security-policy"]
        rows = page.locator("#outbox tbody tr")
        # open every email, so every frame renders (opened in place: a click computed
        # before an email's frame finishes laying out can land in that frame instead)
        page.eval_on_selector_all("#outbox details", "ds => ds.forEach(d => { d.open = true; })")
        page.wait_for_timeout(800)
        hostile = rows.filter(has_text="Hostile body")
        assert hostile.locator("td").nth(2).inner_text() == "kept locally"
        frame_tag = hostile.locator("iframe.email")
        assert frame_tag.get_attribute("sandbox") == ""  # no allow-scripts, nothing allowed
        frame = frame_tag.element_handle().content_frame()
        assert frame.locator("#p").inner_text() == "hostile"  # rendered, as it would arrive
        titled = rows.filter(has_text="on a server").first.locator("iframe.email")
        body = titled.element_handle().content_frame().locator("body").inner_text()
        assert TITLE in body  # the title as text, markup and all
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "outbox.png"), full_page=True)
        assert dialogs == [] and page.title() != "pwned"
        assert not [u for u in requested if "beacon" in u or "remote.example" in u
                    or u.endswith("/x")], requested
    finally:
        context.close()
