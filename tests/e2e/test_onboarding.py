"""Onboarding through the local host, with the simulator's consent page driven over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from shared.model import TenantStatus
from shared.notices import OPS_NOTICES
from shared.onboarding import INVITATIONS, Onboarding
from shared.storage import tables
from tests.e2e.conftest import FUNCTION_KEY
from tests.integration.devhost_fixtures import wait_for


@pytest.fixture(autouse=True)
def quick_verification(monkeypatch):
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0.05)


class Flow:
    """A customer admin's browser, and the MSSP's admin API."""

    def __init__(self, host, simulator, sim) -> None:
        self.base = host.http.base_url
        self.simulator, self.sim = simulator, sim
        self.ca = str(simulator.config.ca_path)

    def invite(self, **fields) -> dict:
        body = {"display_name": "Northwind <Ltd>", "contact_email": "it@northwind.example",
                **fields}
        r = requests.post(f"{self.base}/api/invitations", json=body, timeout=10,
                          headers={"x-functions-key": FUNCTION_KEY})
        assert r.status_code == 201, r.text
        return r.json()

    def start(self, link: str, **extra) -> str:
        """Press the button on the invitation page; the URL of Entra's consent page."""
        r = requests.post(link, params=extra, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        return r.headers["Location"]

    def consent(self, consent_url: str, decision: str = "accept",
                signed_in_tenant: str | None = None) -> str:
        """Open the simulator's consent page, press a button; the callback URL."""
        page = requests.get(consent_url, verify=self.ca, timeout=10)
        assert page.status_code == 200, page.text
        fields = {unescape(m.group(1)): unescape(m.group(2)) for m in re.finditer(
            r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
        if signed_in_tenant:
            fields["signed_in_tenant"] = signed_in_tenant
        action = re.search(r'<form method="post" action="([^"]+)">', page.text).group(1)
        r = requests.post(f"{self.simulator.base_url}{action}",
                          data={**fields, "decision": decision}, verify=self.ca, timeout=10,
                          allow_redirects=False)
        assert r.status_code == 302, r.text
        return r.headers["Location"]

    def callback(self, url: str) -> requests.Response:
        return requests.get(url, allow_redirects=False, timeout=30)

    def onboard(self, tenant_id: str, **invite) -> tuple[dict, str, requests.Response]:
        invitation = self.invite(**invite)
        url = self.consent(self.start(invitation["link"]), signed_in_tenant=tenant_id)
        return invitation, url, self.callback(url)


@pytest.fixture
def flow(app_host, simulator, sim):
    host, _ = app_host
    return Flow(host, simulator, sim)


def _alerts(storage, tenant_id: str) -> int:
    client = tables.table(storage, tables.ALERTS)
    return sum(1 for _ in client.query_entities("PartitionKey eq @pk",
                                                parameters={"pk": tenant_id},
                                                select=["RowKey"]))


def test_invite_approve_callback_active_and_fetched(flow, app_host, sim, storage_env,
                                                   simulator):
    _, repo = app_host
    customer = sim.add_tenant("Northwind Traders")
    sim.generate(customer["id"], 12, age_seconds=60)
    invitation = flow.invite()
    assert invitation["link"].startswith(f"{flow.base}/api/onboard/")

    page = requests.get(invitation["link"], timeout=10)
    assert page.status_code == 200
    assert "Alert.Read.All" in page.text and "Read-only" in page.text
    assert "Contoso MSSP &lt;Test&gt;" in page.text and "<Test>" not in page.text
    assert "Northwind &lt;Ltd&gt;" in page.text
    assert "script" not in page.text.lower()
    assert "form-action 'self' https://127.0.0.1" in page.headers["Content-Security-Policy"]

    consent_url = flow.start(invitation["link"])
    parts = urlsplit(consent_url)
    assert f"{parts.scheme}://{parts.netloc}" == simulator.base_url
    assert parts.path == "/organizations/v2.0/adminconsent"
    query = parse_qs(parts.query)
    assert query["scope"] == ["https://api.securitycenter.microsoft.com/.default"]
    assert query["redirect_uri"] == [f"{flow.base}/api/consent/callback"]
    assert query["client_id"] == [simulator.config.client_id]

    result = flow.callback(flow.consent(consent_url, signed_in_tenant=customer["id"]))
    assert result.status_code == 200, result.text
    assert "You are connected" in result.text
    tenant = repo.get(customer["id"])
    assert tenant.status == TenantStatus.ACTIVE and tenant.display_name == "Northwind <Ltd>"
    wait_for(lambda: _alerts(storage_env, customer["id"]) == 12, timeout=30)  # next tick

    listed = requests.get(f"{flow.base}/api/invitations", timeout=10,
                          headers={"x-functions-key": FUNCTION_KEY}).json()
    used = next(i for i in listed if i["id"] == invitation["id"])
    assert used["status"] == "used" and used["tenant_id"] == customer["id"]
    notices = tables.table(storage_env, OPS_NOTICES).query_entities(
        "Kind eq 'tenant_onboarded' and Tenant eq @t", parameters={"t": customer["id"]})
    (notice,) = list(notices)
    assert notice["To"] == "ops@mssp.example" and "Northwind" in notice["Subject"]


def test_forged_tenant_without_a_valid_state_records_nothing(flow, app_host, sim):
    _, repo = app_host
    victim = sim.add_tenant("Forged Co", consent=[flow.simulator.config.client_id])
    for query in ({"admin_consent": "True", "tenant": victim["id"]},
                  {"admin_consent": "True", "tenant": victim["id"], "state": "forged"},
                  {"admin_consent": "True", "tenant": victim["id"],
                   "state": "a" * 22 + ".b.9999999999.c"}):
        r = flow.callback(f"{flow.base}/api/consent/callback?{urlencode(query)}")
        assert r.status_code == 400
        assert "not valid" in r.text or "no state" in r.text
    assert repo.get(victim["id"]) is None


def test_valid_state_but_a_tenant_that_did_not_consent(flow, app_host, sim):
    _, repo = app_host
    other = sim.add_tenant("Never Consented Co")
    state = parse_qs(urlsplit(flow.start(flow.invite()["link"])).query)["state"][0]
    forged = urlencode({"admin_consent": "True", "tenant": other["id"], "state": state})
    r = flow.callback(f"{flow.base}/api/consent/callback?{forged}")
    assert r.status_code == 400 and "could not confirm" in r.text
    assert repo.get(other["id"]) is None


def test_state_replay_is_refused(flow, app_host, sim):
    _, repo = app_host
    customer = sim.add_tenant("Replay Co")
    _, url, first = flow.onboard(customer["id"])
    assert first.status_code == 200
    repo.set_status(customer["id"], TenantStatus.PAUSED, "by the MSSP")
    again = flow.callback(url)
    assert again.status_code == 409 and "already used" in again.text
    assert repo.get(customer["id"]).status == TenantStatus.PAUSED  # nothing changed


def test_expired_invitation(flow, app_host, sim, storage_env):
    invitation = flow.invite()
    consent_url = flow.start(invitation["link"])
    tables.table(storage_env, INVITATIONS).update_entity(
        {"PartitionKey": "inv", "RowKey": invitation["id"],
         "expires_at": datetime.now(UTC) - timedelta(minutes=1)})
    page = requests.get(invitation["link"], timeout=10)
    assert page.status_code == 404 and "not valid" in page.text
    customer = sim.add_tenant("Late Co")
    r = flow.callback(flow.consent(consent_url, signed_in_tenant=customer["id"]))
    assert r.status_code == 400 and "expired" in r.text
    assert app_host[1].get(customer["id"]) is None


def test_declined_consent_leaves_the_invitation_usable(flow, app_host, sim):
    customer = sim.add_tenant("Hesitant Co")
    invitation = flow.invite()
    url = flow.consent(flow.start(invitation["link"]), "cancel", customer["id"])
    r = flow.callback(url)
    assert r.status_code == 200 and "Consent was not given" in r.text
    assert "still works" in r.text
    assert app_host[1].get(customer["id"]) is None
    # and later the same invitation works
    url = flow.consent(flow.start(invitation["link"]), signed_in_tenant=customer["id"])
    assert flow.callback(url).status_code == 200
    assert app_host[1].get(customer["id"]).status == TenantStatus.ACTIVE


def test_other_consent_errors_are_explained(flow, app_host):
    state = parse_qs(urlsplit(flow.start(flow.invite()["link"])).query)["state"][0]
    query = urlencode({"error": "consent_required", "state": state,
                       "error_description": "AADSTS65004: <b>declined</b>\r\nInjected: yes"})
    r = flow.callback(f"{flow.base}/api/consent/callback?{query}")
    assert r.status_code == 400 and "did not complete" in r.text
    assert "<b>" not in r.text and "&lt;b&gt;" in r.text


def test_wrong_tenant_for_an_invitation_that_named_one(flow, app_host, sim):
    app = flow.simulator.config.client_id
    named = sim.add_tenant("Named Co", domain="named.example")
    intruder = sim.add_tenant("Intruder Co", consent=[app])
    for expected in (named["id"], "named.example"):
        invitation = flow.invite(expected_tenant=expected)
        consent_url = flow.start(invitation["link"])
        assert urlsplit(consent_url).path == f"/{expected}/v2.0/adminconsent"
        state = parse_qs(urlsplit(consent_url).query)["state"][0]
        forged = urlencode({"admin_consent": "True", "tenant": intruder["id"], "state": state})
        r = flow.callback(f"{flow.base}/api/consent/callback?{forged}")
        assert r.status_code == 403 and "different organization" in r.text
    assert app_host[1].get(intruder["id"]) is None
    # the named tenant itself, by domain, goes through
    _, _, ok = flow.onboard(named["id"], expected_tenant="named.example")
    assert ok.status_code == 200


@pytest.mark.parametrize(("query", "word"), [
    ("admin_consent=True&tenant=x", "no state"),
    ("state=a&state=b&admin_consent=True", "more than once"),
    ("state=" + "s" * 5000, "too long"),
    ("tenant=" + "t" * 100 + "&state=x", "too long"),
])
def test_missing_duplicated_and_oversized_parameters(flow, query, word):
    r = flow.callback(f"{flow.base}/api/consent/callback?{query}")
    assert r.status_code == 400 and word in r.text


def test_no_open_redirect_through_any_parameter(flow, app_host):
    evil = "https://evil.example/steal"
    invitation = flow.invite()
    page = requests.get(invitation["link"], params={"redirect_uri": evil, "next": evil},
                        timeout=10)
    assert evil not in page.text
    location = flow.start(invitation["link"], redirect_uri=evil, next=evil, returnUrl=evil)
    assert location.startswith(f"{flow.simulator.base_url}/organizations/v2.0/adminconsent?")
    assert parse_qs(urlsplit(location).query)["redirect_uri"] == [
        f"{flow.base}/api/consent/callback"]
    assert "evil" not in location
    state = parse_qs(urlsplit(location).query)["state"][0]
    for extra in ({"redirect_uri": evil}, {"next": evil}, {"error_uri": evil}):
        query = urlencode({"error": "access_denied", "state": state, **extra})
        r = flow.callback(f"{flow.base}/api/consent/callback?{query}")
        assert "Location" not in r.headers and evil not in r.text


def test_tenant_without_defender_is_not_made_active(flow, app_host, sim):
    customer = sim.add_tenant("No Defender Co", defender="none")
    _, _, result = flow.onboard(customer["id"])
    assert result.status_code == 422 and "not set up or not licensed" in result.text
    assert app_host[1].get(customer["id"]) is None
    lapsed = sim.add_tenant("Lapsed Co", defender="disabled")
    _, _, result = flow.onboard(lapsed["id"])
    assert result.status_code == 422
    assert app_host[1].get(lapsed["id"]) is None


def test_re_consent_after_revocation_reactivates_and_keeps_history(flow, app_host, sim,
                                                                  storage_env):
    _, repo = app_host
    customer = sim.add_tenant("Returning Co")
    sim.generate(customer["id"], 5, age_seconds=60)
    flow.onboard(customer["id"])
    wait_for(lambda: _alerts(storage_env, customer["id"]) == 5, timeout=30)
    repo.set_status(customer["id"], TenantStatus.CONSENT_REVOKED, "app_not_found_in_tenant")
    repo.merge(customer["id"], display_name="Returning Co (renamed)")
    _, _, result = flow.onboard(customer["id"])
    assert result.status_code == 200
    tenant = repo.get(customer["id"])
    assert tenant.status == TenantStatus.ACTIVE
    assert tenant.status_reason == "consent granted again"
    assert tenant.display_name == "Returning Co (renamed)"
    assert _alerts(storage_env, customer["id"]) == 5  # history kept
