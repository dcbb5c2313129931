"""The portal in headless Chromium, against the real function_app on the local host with
Azurite and the simulator. Nothing leaves the machine: every request to another host is
aborted, and the Defender portal link is answered by a route that records it.

Screenshots go to test-artifacts/portal/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError

from shared.model import Tenant, TenantStatus
from shared.storage import tables
from shared.storage.rules import RuleRepository
from shared.storage.tenant_summaries import TOTALS
from shared.tenants.onboarding import Onboarding
from tests.conftest import ROOT
from tests.e2e.conftest import FUNCTION_KEY, PORTAL_GROUP, PORTAL_KEY, PORTAL_ROLE
from tests.integration.devhost_fixtures import wait_for

ARTIFACTS = ROOT / "test-artifacts" / "portal"
XSS_TITLE = "<img src=x onerror=alert(1)>"
SEEDED: dict[str, str] = {}  # name -> tenant id; seeded once, reused by every test


def principal(groups: tuple[str, ...] = (PORTAL_GROUP,), roles: tuple[str, ...] = (),
              name: str = "analyst@mssp.example") -> str:
    """X-MS-CLIENT-PRINCIPAL as App Service Authentication writes it."""
    claims = [{"typ": "preferred_username", "val": name},
              {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
               "val": "0b5e3c1d-1111-4a2b-9c3d-" + name.encode().hex()[:12].ljust(12, "0")}]
    claims += [{"typ": "groups", "val": g} for g in groups]
    claims += [{"typ": "roles", "val": r} for r in roles]
    body = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(body).encode()).decode()


def _count(storage, table: str, tenant_id: str) -> int:
    client = tables.table(storage, table)
    return sum(1 for _ in client.query_entities("PartitionKey eq @pk",
                                                parameters={"pk": tenant_id},
                                                select=["RowKey"]))


def _indexed(storage, tenant_id: str) -> int:
    """The tenant's entries in the AlertIndex (the relay writes them after the fetch)."""
    client = tables.table(storage, tables.ALERT_INDEX)
    return sum(1 for _ in client.query_entities("Tenant eq @t", parameters={"t": tenant_id},
                                                select=["RowKey"]))


@pytest.fixture
def seeded(app_host, sim, simulator, storage_env):
    """Three customers: Fabrikam (alerts of known kinds, one with a hostile title, and a
    notification rule), Woodgrove (a few alerts), and Litware, whose consent is gone."""
    host, repo = app_host
    if SEEDED:
        return SEEDED
    base = f"{host.http.base_url}/api"
    client_id = simulator.config.client_id
    fabrikam = sim.add_tenant("Fabrikam <Portal>", consent=[client_id])["id"]
    woodgrove = sim.add_tenant("Woodgrove Bank", consent=[client_id])["id"]
    litware = sim.add_tenant("Litware Inc")["id"]  # never consented
    # paused until their alerts are in final shape: each alert is fetched in one version
    for tenant_id, name in ((fabrikam, "Fabrikam <Portal>"), (woodgrove, "Woodgrove Bank"),
                            (litware, "Litware Inc")):
        repo.add(Tenant(tenant_id, name, status=TenantStatus.PAUSED))
    rule = requests.post(f"{base}/tenants/{fabrikam}/rules", timeout=10,
                         headers={"x-functions-key": FUNCTION_KEY},
                         json={"name": "High to the SOC", "recipients": ["soc@mssp.example"],
                               "severities": ["High"]})
    assert rule.status_code == 201, rule.text
    ids = sim.generate(fabrikam, 6)["ids"]
    kinds = [("High", "Ransomware", "Servers", XSS_TITLE),
             ("High", "Ransomware", "Servers", "Ransomware behaviour detected"),
             ("Low", "Discovery", "Workstations", "Port scan from a workstation"),
             ("Low", "Discovery", "Workstations", "Network share enumeration"),
             ("Medium", "Execution", "Workstations", "Suspicious PowerShell command line"),
             ("Informational", "Execution", "Servers", "Unusual process on a server")]
    for alert_id, (severity, category, group, title) in zip(ids, kinds, strict=True):
        sim.update_alert(fabrikam, alert_id, {"severity": severity, "category": category,
                                              "rbacGroupName": group, "title": title,
                                              "status": "New"})
    for alert_id in sim.generate(woodgrove, 3)["ids"]:
        sim.update_alert(woodgrove, alert_id, {"severity": "Medium", "status": "InProgress"})
    for tenant_id in (fabrikam, woodgrove, litware):
        repo.set_status(tenant_id, TenantStatus.ACTIVE, "seeded by a test")
    wait_for(lambda: _count(storage_env, tables.ALERTS, fabrikam) == 6
             and _count(storage_env, tables.ALERTS, woodgrove) == 3, timeout=60)
    wait_for(lambda: _indexed(storage_env, fabrikam) == 6
             and _indexed(storage_env, woodgrove) == 3, timeout=60)
    wait_for(lambda: repo.get(litware).status == TenantStatus.CONSENT_REVOKED, timeout=30)
    wait_for(lambda: _count(storage_env, tables.MAIL_OUTBOX, fabrikam) >= 2, timeout=60)
    # the chart's totals over every tenant are recounted at most every 5 minutes: an
    # overview another test viewed before these alerts were in must not be what we see
    with contextlib.suppress(ResourceNotFoundError):
        tables.table(storage_env, tables.TENANT_SUMMARIES).delete_entity(TOTALS, "raised")
    SEEDED.update(fabrikam=fabrikam, woodgrove=woodgrove, litware=litware,
                  rule=rule.json()["id"])
    return SEEDED


@pytest.fixture
def portal(app_host, browser, seeded):
    """(base URL of the portal, a function making a browser page, the Defender links the
    browser tried to open)."""
    host, _ = app_host
    base = f"{host.http.base_url}/api/portal"
    defender: list[str] = []
    contexts = []

    def route(route):
        url = urlsplit(route.request.url)
        if url.hostname == "security.microsoft.com":
            defender.append(route.request.url)
            route.fulfill(status=200, content_type="text/html",
                          body="<title>Microsoft Defender (intercepted)</title>")
        elif url.hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            route.abort()

    def page(header: str | None = principal()):
        context = browser.new_context(
            ignore_https_errors=True,  # the simulator's own CA
            extra_http_headers={"X-MS-CLIENT-PRINCIPAL": header} if header else {})
        context.route("**/*", route)
        contexts.append(context)
        return context.new_page()

    yield base, page, defender
    for context in contexts:
        context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_overview_shows_every_tenant_failing_and_revoked_first(portal, seeded):
    base, page, _ = portal
    p = page()
    response = p.goto(base)
    assert response.status == 200
    assert "script-src" not in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    rows = p.locator("#tenants tbody tr")
    order = rows.evaluate_all("rows => rows.map(r => r.dataset.tenant)")
    assert order.index(seeded["litware"]) < order.index(seeded["fabrikam"])
    litware = p.locator(f"tr[data-tenant='{seeded['litware']}']")
    assert "consent_revoked" in litware.inner_text()
    assert "never" in litware.inner_text()
    fabrikam = p.locator(f"tr[data-tenant='{seeded['fabrikam']}']")
    assert "Fabrikam <Portal>" in fabrikam.inner_text()  # shown as text, escaped
    cells = fabrikam.locator("td.num").all_inner_texts()
    assert cells == ["2", "1", "2", "1"]  # open High, Medium, Low, Informational
    woodgrove = p.locator(f"tr[data-tenant='{seeded['woodgrove']}']")
    assert woodgrove.locator("td.num").all_inner_texts() == ["0", "3", "0", "0"]
    chart = p.locator("svg#alerts-chart")
    assert chart.is_visible()
    assert int(re.search(r": (\d+) in 14 days", chart.locator("title").first.text_content())
               .group(1)) >= 9
    assert chart.locator("rect").count() >= 4
    shot(p, "overview")


def test_filtering_alerts_by_tenant_severity_category_and_device_group(portal, seeded):
    base, page, _ = portal
    p = page()
    p.goto(f"{base}/alerts")
    p.select_option("#f-tenant", seeded["fabrikam"])
    p.select_option("#f-severity", "Low")
    p.click("#f-apply")
    p.wait_for_url(re.compile(r"severity=Low"))
    rows = p.locator("#alerts tbody tr")
    assert rows.count() == 2
    for text in rows.all_inner_texts():
        assert "Low" in text and "Fabrikam <Portal>" in text and "Workstations" in text
    shot(p, "alerts-filtered")

    p.select_option("#f-severity", "")
    p.fill("#f-category", "Execution")
    p.fill("#f-device-group", "Servers")
    p.click("#f-apply")
    p.wait_for_url(re.compile(r"device_group=Servers"))
    assert p.locator("#alerts tbody tr").count() == 1
    assert "Unusual process on a server" in p.locator("#alerts tbody").inner_text()

    query = parse_qs(urlsplit(p.url).query)
    assert query["tenant"] == [seeded["fabrikam"]] and query["category"] == ["Execution"]
    p.goto(f"{base}/alerts?status=InProgress&range=24h")
    statuses = p.locator("#alerts tbody tr td:nth-child(4)").all_inner_texts()
    assert statuses and set(statuses) == {"InProgress"}
    assert "Woodgrove Bank" in p.locator("#alerts tbody").inner_text()


def test_an_alert_links_to_its_page_which_names_its_tenants_defender_portal(portal, seeded):
    """The list opens the alert's page; locally (the simulator is Defender) that page
    names the customer's Defender portal address rather than linking to a portal that
    does not exist here (with a real Defender it is a link: tests/unit)."""
    base, page, defender = portal
    p = page()
    p.goto(f"{base}/alerts?tenant={seeded['woodgrove']}")
    link = p.locator("a.alert-link").first
    alert_id = link.evaluate("a => a.closest('tr').dataset.alert")
    link.click()
    p.wait_for_url(f"{base}/tenants/{seeded['woodgrove']}/alerts/{alert_id}")
    expected = f"https://security.microsoft.com/alerts/{alert_id}?tid={seeded['woodgrove']}"
    assert p.locator("#defender code").inner_text() == expected
    assert "local simulator" in p.locator("#defender-local").inner_text()
    assert p.locator("#defender a").count() == 0 and defender == []


def test_an_alert_title_with_markup_is_shown_as_text(portal, seeded):
    base, page, _ = portal
    p = page()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    p.goto(f"{base}/alerts?tenant={seeded['fabrikam']}&severity=High")
    cell = p.locator("a.alert-link", has_text=XSS_TITLE)
    assert cell.count() == 1 and cell.inner_text() == XSS_TITLE
    assert p.locator("#alerts img").count() == 0
    p.goto(f"{base}/tenants/{seeded['fabrikam']}")  # its emails' subjects carry it too
    p.wait_for_timeout(300)
    assert dialogs == []
    shot(p, "hostile-title")


def test_consent_flow_clicked_through_the_simulator(portal, app_host, sim, monkeypatch):
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0.05)
    _, repo = app_host
    base, page, _ = portal
    customer = sim.add_tenant("Tailspin Toys")["id"]
    p = page()
    p.goto(f"{base}/invitations")
    p.fill("#i-name", "Tailspin Toys")
    p.fill("#i-email", "it@tailspin.example")
    p.click("#i-create")
    p.wait_for_url(re.compile(r"done=invite"))
    link = p.locator("#invitation-list a.invitation-link").first.get_attribute("href")

    customer_browser = page(header=None)  # the customer's admin: no MSSP sign-in
    customer_browser.goto(link)
    assert "Connect Microsoft Defender" in customer_browser.title()
    shot(customer_browser, "consent-1-invitation")
    customer_browser.click("button[type=submit]")
    customer_browser.wait_for_selector("#accept")
    assert "Permissions requested" in customer_browser.content()
    customer_browser.select_option("#signed_in_tenant", customer)
    shot(customer_browser, "consent-2-simulator")
    customer_browser.click("#accept")
    customer_browser.wait_for_url(re.compile(r"/api/consent/callback"))
    assert "You are connected" in customer_browser.content()
    shot(customer_browser, "consent-3-connected")

    assert repo.get(customer).status == TenantStatus.ACTIVE
    p.goto(base)
    assert "Tailspin Toys" in p.locator(f"tr[data-tenant='{customer}']").inner_text()


def test_without_the_principal_or_with_another_group_the_portal_refuses(portal):
    base, page, _ = portal
    anonymous = page(header=None)
    assert anonymous.goto(base).status == 401
    assert "Sign in" in anonymous.locator("h1").inner_text()
    assert "Fabrikam" not in anonymous.content()
    shot(anonymous, "refused-anonymous")

    outsider = page(header=principal(groups=("11111111-2222-3333-4444-555555555555",),
                                     name="guest@elsewhere.example"))
    for path in ("", "/alerts", "/outbox"):
        assert outsider.goto(base + path).status == 403
    assert "guest@elsewhere.example" in outsider.content()
    assert "Fabrikam" not in outsider.content()
    shot(outsider, "refused-wrong-group")

    garbled = page(header="not-base64-json")
    assert garbled.goto(base).status == 401

    by_role = page(header=principal(groups=(), roles=(PORTAL_ROLE,)))
    assert by_role.goto(base).status == 200


def test_local_key_sign_in_then_pause_resume_and_disable_a_rule(portal, seeded,
                                                              storage_env):
    base, page, _ = portal
    p = page(header=None)
    assert p.goto(f"{base}/login").status == 200
    p.fill("input[name=key]", "wrong-key-wrong-key")
    p.click("button[type=submit]")
    assert "not right" in p.content()
    p.fill("input[name=key]", PORTAL_KEY)
    p.click("button[type=submit]")
    p.wait_for_url(base)
    assert p.locator("#tenants").is_visible()
    cookie = next(c for c in p.context.cookies() if c["name"] == "mssp_portal")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert PORTAL_KEY not in cookie["value"]

    p.goto(f"{base}/tenants/{seeded['woodgrove']}")
    if p.locator("#resume").count():  # each test's host pauses other tests' tenants
        p.click("#resume")
        p.wait_for_url(re.compile(r"done=resume"))
    assert p.locator("#tenant-status").inner_text() == "active"
    p.click("#pause")
    p.wait_for_url(re.compile(r"done=pause"))
    assert p.locator("#tenant-status").inner_text() == "paused"
    assert "Fetching is paused." in p.content()

    p.goto(f"{base}/tenants/{seeded['fabrikam']}")
    rule_row = p.locator(f"tr[data-rule='{seeded['rule']}']")
    assert "soc@mssp.example" in rule_row.inner_text()
    assert p.locator("#runs tbody tr").count() >= 1
    assert "High" in p.locator("#emails").inner_text()
    rule_row.locator("button", has_text="Disable").click()
    p.wait_for_url(re.compile(r"done=disable"))
    assert "disabled" in p.locator(f"tr[data-rule='{seeded['rule']}']").inner_text()
    rules = RuleRepository(tables.table(storage_env, tables.NOTIFY_RULES))
    assert rules.get(seeded["fabrikam"], seeded["rule"]).enabled is False
    shot(p, "tenant")

    p.goto(f"{base}/outbox")
    assert "soc@mssp.example" in p.locator("#outbox").inner_text()
    shot(p, "outbox")
