"""Access levels through the local host (issue 20, item 4): the admin API's invitations and
re-consent invitations take `access`, the consent page names the permission and the app,
the sign-in goes to that app, the tenant shows what was granted; without a triage app the
API says why an invitation cannot ask for triage."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devtools.simulator.server import DEFAULT_MSSP_TENANT
from shared.model import Tenant, TenantStatus
from shared.tenants.onboarding import Onboarding
from tests.e2e.conftest import FUNCTION_KEY
from tests.e2e.test_onboarding import Flow, _alerts
from tests.e2e.test_portal_browser import principal
from tests.e2e.test_portal_http import _session, _token
from tests.integration.devhost_fixtures import wait_for

KEY = {"x-functions-key": FUNCTION_KEY}


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {"MSSP_TENANT_ID": DEFAULT_MSSP_TENANT}


@pytest.fixture(autouse=True)
def quick_verification(monkeypatch):
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0.05)


@pytest.fixture
def flow(app_host, simulator, sim):
    host, _ = app_host
    return Flow(host, simulator, sim)


def _tenant(flow, tenant_id: str) -> dict:
    return requests.get(f"{flow.base}/api/tenants/{tenant_id}", headers=KEY, timeout=10).json()


def test_a_triage_invitation_through_the_host_and_an_upgrade_by_reconsent(
        flow, app_host, sim, simulator, storage_env):
    invitation = flow.invite(access="triage")
    assert invitation["access"] == "triage"
    listed = requests.get(f"{flow.base}/api/invitations", headers=KEY, timeout=10).json()
    assert next(i for i in listed if i["id"] == invitation["id"])["access"] == "triage"
    page = requests.get(invitation["link"], timeout=10).text
    assert "Alert.ReadWrite.All" in page and "Triage" in page
    assert simulator.config.triage_client_id in page and "Alert.Read.All" not in page
    consent_url = flow.start(invitation["link"])
    query = {k: v[0] for k, v in parse_qs(urlsplit(consent_url).query).items()}
    assert query["client_id"] == simulator.config.triage_client_id
    customer = sim.add_tenant("Triage Host Co")["id"]
    sim.generate(customer, 3, age_seconds=60)
    result = flow.callback(flow.consent(consent_url, signed_in_tenant=customer))
    assert result.status_code == 200 and "update their status" in result.text
    shown = _tenant(flow, customer)
    assert (shown["access"], shown["access_reason"]) == ("triage", None)
    # an active triage tenant: a re-consent for triage is needless, one for read is not
    assert flow.reconsent(customer, access="triage").status_code == 409
    assert flow.reconsent(customer, access="read").status_code == 201

    # a read-only tenant is upgraded by a re-consent link and keeps being fetched
    _, repo = app_host
    reader = sim.add_tenant("Upgrade Host Co", consent=[simulator.config.client_id])["id"]
    repo.add(Tenant(reader, "Upgrade Host Co"))
    assert _tenant(flow, reader)["access"] == "read"
    r = flow.reconsent(reader, access="triage")
    assert r.status_code == 201 and r.json()["access"] == "triage"
    page = requests.get(r.json()["link"], timeout=10).text
    assert "Alert.ReadWrite.All" in page
    _, _, again = flow.onboard(reader, invitation=r.json())
    assert again.status_code == 200 and "You are connected" in again.text
    assert _tenant(flow, reader)["access"] == "triage"
    assert repo.get(reader).consent_app == "triage"
    # the customer removes the read app at once: a fetch queued before the upgrade (the
    # read app's token) is skipped, not taken for a revoked consent; the next one takes
    # the triage app's
    sim.revoke(reader, simulator.config.client_id)
    sim.generate(reader, 2, age_seconds=30)
    wait_for(lambda: _alerts(storage_env, reader) == 2, timeout=30)
    assert repo.get(reader).status == TenantStatus.ACTIVE, repo.get(reader)


@pytest.mark.parametrize("extra_settings", [{
    "MSSP_TENANT_ID": DEFAULT_MSSP_TENANT, "MSSP_TRIAGE_CLIENT_ID": "",
    "MSSP_TRIAGE_CLIENT_SECRET": ""}])
def test_without_a_triage_app_invitations_are_read_only_and_the_api_says_why(
        flow, app_host, sim):
    r = requests.post(f"{flow.base}/api/invitations", headers=KEY, timeout=10, json={
        "display_name": "No Triage Co", "contact_email": "it@notriage.example",
        "access": "triage"})
    assert r.status_code == 400
    (error,) = r.json()["errors"]
    assert error["field"] == "access" and "MSSP_TRIAGE_CLIENT_ID" in error["message"]
    assert flow.invite()["access"] == "read"


def test_the_portal_offers_triage_invitations_and_an_upgrade_link(app_host, sim, simulator):
    host, repo = app_host
    base = f"{host.http.base_url}/api/portal"
    own = {"Origin": host.http.base_url, "Sec-Fetch-Site": "same-origin"}
    ana = _session(principal(name="ana@mssp.example"))
    token = _token(ana, f"{base}/invitations")
    made = ana.post(f"{base}/invitations", headers=own, allow_redirects=False, timeout=10,
                    data={"csrf": token, "display_name": "Portal Triage Co",
                          "contact_email": "it@portaltriage.example", "access": "triage"})
    assert made.status_code == 303
    listed = ana.get(f"{base}/invitations", timeout=10).text
    assert 'id="i-access"' in listed and "Portal Triage Co</td><td>it@portaltriage.example" \
        "</td><td>triage</td>" in listed
    # a read-only tenant's page: its access, and the upgrade by a re-consent link
    created = sim.add_tenant("Portal Upgrade Co", consent=[simulator.config.client_id])
    tenant = repo.add(Tenant(created["id"], "Portal Upgrade Co"))
    page_url = f"{base}/tenants/{tenant.tenant_id}"
    page = ana.get(page_url, timeout=10).text
    assert 'id="tenant-access">read-only<' in page and "Upgrade to triage access" in page
    done = ana.post(f"{page_url}/reconsent", headers=own, allow_redirects=False, timeout=10,
                    data={"csrf": _token(ana, page_url), "access": "triage"})
    assert done.status_code == 303
    shown = ana.get(f"{host.http.base_url}{done.headers['Location']}", timeout=10).text
    assert "(re-consent)</span></td><td></td><td>triage</td><td>open</td>" in shown
    assert repo.get(tenant.tenant_id).access == "read"  # until the customer consents
