"""Bulk triage through the real host: the keyed API (202 and a status URL, 400 naming
the field, 401 without the key, 404 for an unknown job) and the portal's bulk form (its
CSRF token, 303 to the job's page, which shows each alert's outcome escaped).

The first tenants granted read-only access, so the worker refuses their alerts with the
reason and never calls Defender; the last test sends a tenant's part to the simulator's
batchUpdate through the host."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from html import unescape

import pytest
import requests

from shared.model import Tenant
from tests.e2e.conftest import FUNCTION_KEY
from tests.e2e.test_portal_browser import principal

SOAR_KEY = "soar-automation-key-0123456789"
READ_WRITE = {"https://api.securitycenter.microsoft.com": ["Alert.ReadWrite.All"]}


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {"MSSP_API_KEYS": f"soar:{hashlib.sha256(SOAR_KEY.encode()).hexdigest()}"}


@pytest.fixture
def api(api):
    """The keyed API with a named automation key: jobs are audited under its name."""
    session = api[1]
    session.headers["X-Api-Key"] = SOAR_KEY
    return api


def _read_only(repo, reason: str = "") -> str:
    """A new read-only tenant (the session's Azurite is shared: each test its own)."""
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Read <Only>", access="read", access_reason=reason))
    return tenant_id


def _wait_finished(get, url: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        body = get(url, timeout=10).json()
        if body["finished"] or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def test_the_bulk_api_queues_a_job_and_reports_each_alert(api):
    base, session, repo = api
    read_only = _read_only(repo, "granted Alert.Read.All only")
    bad = session.post(f"{base}/alerts/bulk", timeout=10, json={
        "alerts": [{"tenant": read_only, "alert": "da1"}],
        "change": {"classification": "FalsePositive", "determination": "Malware"}})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "change.determination"
    both = session.post(f"{base}/alerts/bulk", timeout=10, json={
        "alerts": [], "filter": {}, "change": {"status": "Resolved"}})
    assert both.status_code == 400 and both.json()["errors"][0]["field"] == "body"
    keyless = requests.post(f"{base}/alerts/bulk", timeout=10, json={})
    assert keyless.status_code == 401
    unnamed = requests.post(f"{base}/alerts/bulk", timeout=10, json={},
                            headers={"x-functions-key": FUNCTION_KEY, "X-Api-Key": "wrong"})
    assert unnamed.status_code == 401 and unnamed.json()["errors"][0]["field"] == "X-Api-Key"

    made = session.post(f"{base}/alerts/bulk", timeout=10, json={
        "alerts": [{"tenant": read_only, "alert": "da1"},
                   {"tenant": read_only, "alert": "da<2>"}],
        "change": {"status": "Resolved", "comment": "bulk"}})
    assert made.status_code == 202, made.text
    accepted = made.json()
    assert accepted["total"] == 2 and accepted["tenants"] == 1
    assert made.headers["Location"] == accepted["status_url"]
    status = _wait_finished(session.get, f"{base}{accepted['status_url'][4:]}")
    assert status["finished"] and status["counts"]["refused"] == 2
    assert {a["detail"] for a in status["alerts"]} == {
        "the tenant granted read-only access: granted Alert.Read.All only"}
    assert status["tenants"][0]["calls"] == 0
    page = session.get(f"{base}{accepted['status_url'][4:]}", params={"limit": 1},
                       timeout=10).json()
    assert len(page["alerts"]) == 1 and page["next"]
    assert session.get(f"{base}/alerts/bulk/{'0' * 32}", timeout=10).status_code == 404
    assert session.get(f"{base}{accepted['status_url'][4:]}", params={"limit": 0},
                       timeout=10).status_code == 400


def test_the_portal_bulk_form_starts_a_job_and_shows_it(app_host):
    host, repo = app_host
    read_only = _read_only(repo)
    portal = f"{host.http.base_url}/api/portal"
    ana = requests.Session()
    ana.headers["X-MS-CLIENT-PRINCIPAL"] = principal(name="ana@mssp.example")
    listing = ana.get(f"{portal}/alerts", timeout=20)
    assert listing.status_code == 200 and 'id="bulk"' in listing.text
    assert "at most 5,000" in listing.text
    csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', listing.text).group(1))
    job_id = re.search(r'name="job_id" value="([0-9a-f]{32})"', listing.text).group(1)
    own = {"Origin": host.http.base_url, "Sec-Fetch-Site": "same-origin"}
    form = {"csrf": csrf, "job_id": job_id, "scope": "selected", "status": "Resolved",
            "sel": [f"{read_only}|da<script>1", f"{read_only}|da2"]}
    forged = ana.post(f"{portal}/bulk", data={**form, "csrf": "1.2.3"}, headers=own,
                      allow_redirects=False, timeout=10)
    assert forged.status_code == 403
    started = ana.post(f"{portal}/bulk", data=form, headers=own, allow_redirects=False,
                       timeout=10)
    assert started.status_code == 303
    assert started.headers["Location"] == f"/api/portal/bulk/{job_id}"
    again = ana.post(f"{portal}/bulk", data=form, headers=own, allow_redirects=False,
                     timeout=10)  # the form sent twice: the same job
    assert again.headers["Location"] == started.headers["Location"]
    page = ana.get(f"{host.http.base_url}{started.headers['Location']}", timeout=10)
    assert page.status_code == 200
    assert "2 refused" in page.text and "read-only access" in page.text
    assert "da&lt;script&gt;1" in page.text and "<script>" not in page.text
    refused = ana.post(f"{portal}/bulk", data={**form, "job_id": "", "status": "",
                                               "classify": "FalsePositive:Malware"},
                       headers=own, allow_redirects=False, timeout=10)
    assert refused.status_code == 400 and "not valid" in refused.text


def test_the_host_runs_a_tenants_part_against_defender(api, sim, simulator):
    """The queue trigger runs through the host: one batchUpdate for the tenant's alerts,
    which end resolved in the simulator."""
    base, session, repo = api
    tenant_id = sim.add_tenant("Triage Co", consent=[simulator.config.client_id],
                               alerts=3)["id"]
    sim.grant(tenant_id, simulator.config.client_id, READ_WRITE)
    repo.add(Tenant(tenant_id, "Triage Co", access="triage"))
    ids = [a["id"] for a in sim.alerts(tenant_id)]
    made = session.post(f"{base}/alerts/bulk", timeout=10, json={
        "alerts": [{"tenant": tenant_id, "alert": a} for a in ids],
        "change": {"status": "Resolved"}})
    assert made.status_code == 202, made.text
    status = _wait_finished(session.get, f"{base}{made.json()['status_url'][4:]}")
    assert status["finished"] and status["tenants"][0]["calls"] == 1
    assert status["counts"]["done"] == 3, status["alerts"]
    assert {a["status"] for a in sim.alerts(tenant_id)} == {"Resolved"}
