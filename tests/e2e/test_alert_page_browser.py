"""The alert page in headless Chromium, on the local host with Azurite and the simulator:
opened from the alerts list, everything shown (hostile text as text), a read-only
tenant's forms disabled; then triage through its forms — assign to me, resolve as
FalsePositive/NotMalicious with a comment, the new state shown at once, the simulator
changed, the audit trail's entries shown, the next fetches adding nothing, the SIEM feed
holding each change once with who made it, and no email to a rule that ignores the
MSSP's own changes — and a conflict (the alert changed in the simulator between render
and submit) shown, not overwritten.

Screenshots go to test-artifacts/alert-page/.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime

import requests

from shared import timefmt
from shared.model import Tenant
from shared.storage import tables
from shared.storage.mail_outbox import MailOutbox
from shared.storage.siem_feed import SiemFeedRepository
from tests.conftest import ROOT
from tests.e2e import test_portal_browser as portal_tests
from tests.e2e.conftest import FUNCTION_KEY
from tests.integration.devhost_fixtures import wait_for

ARTIFACTS = ROOT / "test-artifacts" / "alert-page"
XSS_TITLE = portal_tests.XSS_TITLE
seeded = portal_tests.seeded  # the seeded tenants, and the portal in a browser, as there
portal = portal_tests.portal


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _reload_until(page, check, timeout: float = 45) -> None:
    """The SIEM feed and the emails arrive a little after the alert: reload until shown."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not shown in time")
        time.sleep(1)
        page.reload()


def test_an_alert_opened_from_the_list_shows_what_the_analyst_reads(portal, seeded, sim):
    base, page, defender = portal
    p = page()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    p.goto(f"{base}/alerts?tenant={seeded['fabrikam']}&severity=High")
    p.locator("a.alert-link", has_text=XSS_TITLE).click()
    p.wait_for_url(re.compile(rf"/tenants/{seeded['fabrikam']}/alerts/"))
    assert p.locator("#alert-title").inner_text() == XSS_TITLE
    assert p.locator("#a-severity").inner_text() == "High"
    assert p.locator("#evidence tbody tr").count() >= 2  # the simulator gives 2-6 items
    assert "powershell" in p.locator("#evidence").inner_text().lower()
    techniques = next(a for a in sim.alerts(seeded["fabrikam"])
                      if a["title"] == XSS_TITLE)["mitreTechniques"]  # none for some kinds
    assert p.locator("#a-mitre").inner_text() == (", ".join(techniques) or "—")
    # locally there is no Defender portal: said, not a dead link
    assert p.locator("#defender-local").is_visible() and p.locator("#defender-link").count() == 0
    # its version in the SIEM feed, and the email the High rule sent about it
    _reload_until(p, lambda: p.locator("#versions tbody tr td").count() > 1
                  and p.locator("#alert-emails tbody tr td").count() > 1)
    assert "new" in p.locator("#versions tbody").inner_text()
    assert "soc@mssp.example" in p.locator("#alert-emails").inner_text()
    # a tenant that granted read access only: the forms are there, disabled, with the reason
    assert p.locator("#actions").get_attribute("disabled") is not None
    for button in ("#assign", "#set-status", "#classify", "#add-comment"):
        assert p.locator(button).is_disabled()
    assert "read-only access" in p.locator("#actions-blocked").inner_text()
    assert p.locator("#reconsent-link").count() == 1
    assert p.locator("#alert-details img").count() == 0 and dialogs == [] and defender == []
    shot(p, "alert-read-only")

    audit = p.goto(f"{base}/audit?outcome=done&since=2026-01-01")  # reachable, filterable
    assert audit.status == 200 and p.locator("#a-outcome").input_value() == "done"
    assert "script-src" not in audit.headers["content-security-policy"]
    p.goto(f"{base}/tenants/{seeded['fabrikam']}")  # the tenant page lists it too
    p.locator("#tenant-alerts a.alert-link", has_text=XSS_TITLE).click()
    p.wait_for_url(re.compile(r"/alerts/"))
    assert p.locator("#alert-title").inner_text() == XSS_TITLE


def test_triage_from_the_alert_page_and_a_conflict_is_shown_not_overwritten(
        app_host, portal, sim, simulator, storage_env):
    host, repo = app_host
    base, page, _ = portal
    name = f"Triage Co {uuid.uuid4().hex[:6]}"
    tenant_id = sim.add_tenant(name, consent=[simulator.config.client_id])["id"]
    sim.grant(tenant_id, simulator.config.client_id,
              {"https://api.securitycenter.microsoft.com": ["Alert.ReadWrite.All"]})
    repo.add(Tenant(tenant_id, name))
    repo.merge(tenant_id, access="triage", access_reason="")  # as ACCESS records a grant
    rule = requests.post(f"{host.http.base_url}/api/tenants/{tenant_id}/rules", timeout=10,
                         headers={"x-functions-key": FUNCTION_KEY},
                         json={"name": "Every change", "recipients": ["soc@mssp.example"],
                               "on_update": True})  # ignore_own_changes: on by default
    assert rule.status_code == 201, rule.text
    ids = sim.generate(tenant_id, 2)["ids"]
    for alert_id in ids:
        sim.update_alert(tenant_id, alert_id, {"status": "New", "assignedTo": None})
    alerts = tables.table(storage_env, tables.ALERTS)
    wait_for(lambda: sum(1 for _ in alerts.query_entities(
        "PartitionKey eq @pk", parameters={"pk": tenant_id}, select=["RowKey"])) == 2,
        timeout=60)
    p = page()
    p.goto(f"{base}/alerts?tenant={tenant_id}")
    first = p.locator(f"#alerts tr[data-alert='{ids[0]}'] a.alert-link")
    _reload_until(p, lambda: first.count() == 1)
    first.click()
    p.wait_for_url(re.compile(r"/alerts/"))
    assert p.locator("#actions").get_attribute("disabled") is None
    assert p.locator("#classify").is_enabled()

    p.click("#assign")  # to me (the default)
    p.wait_for_selector("#outcome")
    assert "Done" in p.locator("#outcome").inner_text()
    assert p.locator("#a-assigned").inner_text() == "analyst@mssp.example"

    p.select_option("#verdict", "FalsePositive/NotMalicious")
    assert p.locator("#resolve").is_checked()
    p.fill("#classify-comment", "Admin tool, expected")
    p.click("#classify")
    p.wait_for_selector("#outcome")
    assert "Done" in p.locator("#outcome").inner_text()
    assert p.locator("#a-status").inner_text() == "Resolved"
    assert p.locator("#a-classification").inner_text() == "FalsePositive"
    assert p.locator("#a-determination").inner_text() == "NotMalicious"
    assert "Admin tool, expected" in p.locator("#comments").inner_text()
    shot(p, "alert-resolved")
    in_sim = next(a for a in sim.alerts(tenant_id) if a["id"] == ids[0])
    assert (in_sim["status"], in_sim["classification"], in_sim["determination"],
            in_sim["assignedTo"]) == ("Resolved", "FalsePositive", "NotMalicious",
                                      "analyst@mssp.example")
    assert any(c["comment"] == "Admin tool, expected" for c in in_sim["comments"])
    p.reload()
    assert p.locator("#alert-audit tbody tr").count() == 2  # assign, classify: once each
    p.goto(f"{base}/audit?tenant={tenant_id}")  # the audit page, filtered to the tenant
    rows = p.locator("#audit tbody tr[data-action]")
    assert rows.count() == 2 and "analyst@mssp.example" in rows.first.inner_text()
    rows.first.locator("a.audit-alert").click()
    p.wait_for_url(re.compile(rf"/alerts/{ids[0]}$"))

    # the SIEM feed has each version once (new, assigned, resolved), the MSSP's changes
    # saying who made them; fetches every 2 s since add nothing; no email about them
    feed = SiemFeedRepository(tables.table(storage_env, tables.SIEM_FEED))
    today = [datetime.now(UTC).strftime("%Y%m%d")]

    def versions() -> list[dict]:
        return feed.of_alert(tenant_id, ids[0], today, 20)
    wait_for(lambda: len(versions()) >= 3, timeout=60)
    time.sleep(6)  # three more fetch ticks
    entries = versions()
    assert len(entries) == 3 and len({e["event_id"] for e in entries}) == 3, entries
    assert [e["change"] for e in entries] == ["updated", "updated", "new"]
    assert all((e.get("by") or {}).get("name") == "analyst@mssp.example"
               for e in entries[:2]), entries
    assert entries[0]["version"] == timefmt.normalize(in_sim["lastUpdateTime"])
    emails = MailOutbox(tables.table(storage_env, tables.MAIL_OUTBOX)).for_alert(
        tenant_id, ids[0])
    assert len(emails) == 1, emails  # the new alert's, none for the MSSP's own changes

    # a conflict: the alert changes in Defender between render and submit
    p.goto(f"{base}/tenants/{tenant_id}/alerts/{ids[1]}")
    sim.update_alert(tenant_id, ids[1], {"status": "InProgress",
                                         "assignedTo": "someone@customer.example"})
    p.select_option("#status-select", "Resolved")
    p.click("#set-status")
    p.wait_for_selector("#outcome")
    assert "changed in Defender since you opened it" in p.locator("#outcome").inner_text()
    assert p.locator("#a-status").inner_text() == "InProgress"
    assert p.locator("#a-assigned").inner_text() == "someone@customer.example"
    shot(p, "alert-conflict")
    in_sim = next(a for a in sim.alerts(tenant_id) if a["id"] == ids[1])
    assert in_sim["status"] == "InProgress"  # nothing overwritten
