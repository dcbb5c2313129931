"""The tenant page as an analyst uses it, in headless Chromium: a notification rule
created and edited through the portal's forms sends its email over real SMTP (aiosmtpd);
an invitation's link is there to copy, and the invitation can be revoked."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
import requests

from shared.model import Tenant
from tests.conftest import ROOT
from tests.e2e.test_portal_browser import principal
from tests.integration import test_notify
from tests.integration.devhost_fixtures import wait_for

ARTIFACTS = ROOT / "test-artifacts" / "portal-forms"
smtp = test_notify.smtp  # a real SMTP server (aiosmtpd) and its inbox, as notify's tests


@pytest.fixture
def extra_settings(smtp) -> dict[str, str]:
    _, server = smtp
    return {"MAIL_TRANSPORT": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port),
            "SMTP_SECURITY": "none"}


@pytest.fixture
def analyst(app_host, browser):
    context = browser.new_context(extra_http_headers={"X-MS-CLIENT-PRINCIPAL": principal()})
    context.route("**/*", lambda route: route.continue_() if urlsplit(
        route.request.url).hostname in ("127.0.0.1", "localhost") else route.abort())
    yield context.new_page()
    context.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_rule_created_and_edited_in_the_portal_sends_its_email(app_host, simulator, sim,
                                                                 smtp, analyst):
    host, repo = app_host
    inbox, _ = smtp
    portal = f"{host.http.base_url}/api/portal"
    name = f"Forms Co {uuid.uuid4().hex[:6]}"
    tenant_id = sim.add_tenant(name, consent=[simulator.config.client_id])["id"]
    repo.add(Tenant(tenant_id, name))
    page = analyst
    page.goto(f"{portal}/tenants/{tenant_id}")
    page.click("#new-rule > summary")
    page.fill("#new-rule-name", "High to the SOC")
    page.fill("#new-rule-recipients", "soc@mssp.example")
    page.check("#new-rule-sev-High")
    sent = {field: page.locator(f"#new-rule-form input[name={field}]").input_value()
            for field in ("csrf", "back", "rule_id")}
    page.click("#new-rule-save")
    page.wait_for_url(re.compile(r"done=rules"))
    row = page.locator("#rules tbody tr", has_text="High to the SOC")
    assert row.count() == 1 and "soc@mssp.example" in row.inner_text()
    again = page.request.post(  # the same form sent again (a double click): still one rule
        f"{portal}/tenants/{tenant_id}/rules", headers={"Origin": host.http.base_url},
        form={**sent, "name": "High to the SOC", "recipients": "soc@mssp.example",
              "severity_High": "yes", "on_new": "yes", "enabled": "yes",
              "delivery": "each"}, max_redirects=0)
    assert again.status == 303
    page.reload()
    assert page.locator("#rules tbody tr", has_text="High to the SOC").count() == 1

    row.locator("details.edit-rule > summary").click()  # edit: a second recipient
    edit = row.locator("form.rule-form")
    edit.locator("textarea[name=recipients]").fill("soc@mssp.example\nlead@mssp.example")
    edit.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"done=save"))
    assert "lead@mssp.example" in page.locator("#rules tbody tr",
                                                has_text="High to the SOC").inner_text()
    _shot(page, "rule-saved")

    (alert_id,) = sim.generate(tenant_id, 1)["ids"]
    sim.update_alert(tenant_id, alert_id, {"severity": "High", "title": "Form rule alert"})

    def emails() -> list:
        return [m for m in inbox.messages if alert_id in str(m["X-MSSP-Hub-Event"] or "")]

    wait_for(lambda: emails(), timeout=60)
    (message,) = emails()
    assert "Form rule alert" in message["Subject"] and name in message["Subject"]
    assert sorted(a.strip() for a in message["To"].split(",")) == [
        "lead@mssp.example", "soc@mssp.example"]


def test_an_invitation_link_is_there_to_copy_and_it_can_be_revoked(app_host, analyst):
    host, _ = app_host
    portal = f"{host.http.base_url}/api/portal"
    page = analyst
    page.goto(f"{portal}/invitations")
    customer = f"Revoked Co {uuid.uuid4().hex[:6]}"
    page.fill("#i-name", customer)
    page.fill("#i-email", "it@revoked.example")
    page.click("#i-create")
    page.wait_for_url(re.compile(r"done=invite"))
    row = page.locator("#invitation-list tbody tr", has_text=customer)
    link = row.locator("input.invitation-copy").input_value()
    assert link == row.locator("a.invitation-link").get_attribute("href")
    assert link.startswith(f"{host.http.base_url}/api/onboard/")
    assert row.locator("input.invitation-copy").get_attribute("readonly") is not None
    assert requests.get(link, timeout=10).status_code == 200
    row.locator("button.revoke-invitation").click()
    page.wait_for_url(re.compile(r"done=revoke"))
    row = page.locator("#invitation-list tbody tr", has_text=customer)
    assert "revoked" in row.inner_text() and row.locator("input.invitation-copy").count() == 0
    assert requests.get(link, timeout=10).status_code == 404  # the link no longer works
    _shot(page, "invitation-revoked")


def test_an_entra_error_reads_in_plain_words_with_the_raw_text_on_demand(app_host, sim,
                                                                          analyst):
    host, repo = app_host
    name = f"Unconsented Co {uuid.uuid4().hex[:6]}"
    tenant_id = sim.add_tenant(name)["id"]  # never consented: Entra answers AADSTS700016
    repo.add(Tenant(tenant_id, name))
    wait_for(lambda: repo.get(tenant_id).last_error, timeout=30)
    page = analyst
    page.goto(f"{host.http.base_url}/api/portal/tenants/{tenant_id}")
    box = page.locator("#details details.error-text")
    assert box.locator("summary").inner_text().startswith(
        "The customer's tenant no longer has our application")
    raw = box.locator("code")
    assert not raw.is_visible() and "AADSTS700016" in raw.text_content()
    box.locator("summary").click()
    assert raw.is_visible()  # the detail on demand
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page.content())  # to the second
    _shot(page, "plain-error")
