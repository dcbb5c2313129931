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
    # the customer removes the read app: the worker fetches with the triage app's tokens
    sim.revoke(reader, simulator.config.client_id)
    sim.generate(reader, 2, age_seconds=30)
    wait_for(lambda: _alerts(storage_env, reader) == 2, timeout=30)
    assert repo.get(reader).status == TenantStatus.ACTIVE


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
