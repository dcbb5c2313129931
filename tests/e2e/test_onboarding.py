"""Onboarding through the local host, with the simulator's sign-in page driven over HTTP.

The tenant comes from the ID token of the admin who signed in; the forgeries of issue 16
(a `tenant` parameter naming someone else's tenant) are each reproduced here."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html import unescape
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from devtools.simulator.server import DEFAULT_MSSP_TENANT
from shared.model import Tenant, TenantStatus
from shared.storage import tables
from shared.storage.invitations import InvitationRepository
from shared.tenants.onboarding import INVITATIONS, Onboarding
from shared.tenants.ops_notices import OPS_NOTICES, OpsNotices
from tests.e2e.conftest import FUNCTION_KEY
from tests.integration.devhost_fixtures import wait_for


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {"MSSP_TENANT_ID": DEFAULT_MSSP_TENANT}


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
        """Press the button on the invitation page; the URL of Entra's sign-in page."""
        r = requests.post(link, params=extra, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        return r.headers["Location"]

    def consent(self, consent_url: str, decision: str = "accept",
                signed_in_tenant: str | None = None) -> str:
        """Open the simulator's sign-in page, sign in as an admin of `signed_in_tenant`,
        press a button; the callback URL (with `code` and `state`)."""
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

    def onboard(self, tenant_id: str, invitation: dict | None = None, **invite
                ) -> tuple[dict, str, requests.Response]:
        invitation = invitation or self.invite(**invite)
        url = self.consent(self.start(invitation["link"]), signed_in_tenant=tenant_id)
        return invitation, url, self.callback(url)

    def forged(self, invitation: dict, tenant_id: str) -> requests.Response:
        """The reproduced attack: a fresh attempt's valid `state`, and a callback that
        names someone else's tenant as Entra's admin-consent redirect would."""
        state = parse_qs(urlsplit(self.start(invitation["link"])).query)["state"][0]
        query = urlencode({"admin_consent": "True", "tenant": tenant_id, "state": state,
                           "scope": "https://api.securitycenter.microsoft.com/.default"})
        return self.callback(f"{self.base}/api/consent/callback?{query}")

    def invitation(self, invitation_id: str) -> dict:
        listed = requests.get(f"{self.base}/api/invitations", timeout=10,
                              headers={"x-functions-key": FUNCTION_KEY}).json()
        return next(i for i in listed if i["id"] == invitation_id)

    def reconsent(self, tenant_id: str, **body) -> requests.Response:
        return requests.post(f"{self.base}/api/tenants/{tenant_id}/invitations", json=body,
                             timeout=10, headers={"x-functions-key": FUNCTION_KEY})


@pytest.fixture
def flow(app_host, simulator, sim):
    host, _ = app_host
    return Flow(host, simulator, sim)


def _notices(storage, tenant_id: str) -> list[dict]:
    return list(tables.table(storage, OPS_NOTICES).query_entities(
        "Kind eq 'tenant_onboarded' and Tenant eq @t", parameters={"t": tenant_id}))


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
    assert parts.path == "/organizations/oauth2/v2.0/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["scope"] == "openid profile https://api.securitycenter.microsoft.com/.default"
    assert query["redirect_uri"] == f"{flow.base}/api/consent/callback"
    assert query["client_id"] == simulator.config.client_id
    assert (query["response_type"], query["prompt"]) == ("code", "admin_consent")
    assert query["code_challenge_method"] == "S256" and len(query["nonce"]) >= 43
    assert "code_verifier" not in query

    callback = flow.consent(consent_url, signed_in_tenant=customer["id"])
    assert "code=" in callback and customer["id"] not in callback  # no tenant in the URL
    result = flow.callback(callback)
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


def test_a_valid_state_without_a_code_records_nothing(flow, app_host, sim):
    _, repo = app_host
    other = sim.add_tenant("Never Consented Co")
    r = flow.forged(flow.invite(), other["id"])
    assert r.status_code == 400 and "no authorization code" in r.text
    assert repo.get(other["id"]) is None


def _victim(flow, sim, repo, case: str) -> str:
    """A tenant the attacker names: consented to the app in Entra, and in the registry as
    `case` says (absent for "consented_never_invited")."""
    victim = sim.add_tenant(f"Victim {case}", consent=[flow.simulator.config.client_id])["id"]
    if case != "consented_never_invited":
        repo.add(Tenant(victim, f"Victim {case}"))
        if case != "active":
            repo.set_status(victim, TenantStatus(case), "set by the test")
    return victim


@pytest.mark.parametrize("case", ["paused", "offboarded", "consented_never_invited",
                                  "active"])
def test_a_forged_tenant_parameter_changes_nothing(flow, app_host, sim, storage_env, case):
    """Findings (a) paused re-activated, (b) offboarded re-activated, (c) a tenant that
    consented once registered uninvited, (e) an active tenant: invitation used up and a
    false notice. The callback now ignores `tenant`: nothing happens to the victim."""
    _, repo = app_host
    victim = _victim(flow, sim, repo, case)
    before = repo.get(victim)
    invitation = flow.invite()
    flow.forged(invitation, victim)
    after = repo.get(victim)
    assert (after.status if after else None) == (before.status if before else None)
    assert _notices(storage_env, victim) == []
    assert flow.invitation(invitation["id"])["status"] == "open"
    # and with a real sign-in of the attacker's own new tenant plus the forged parameter,
    # only the signed-in tenant (the ID token's) is registered
    attacker = sim.add_tenant(f"Attacker {case}")["id"]
    url = flow.consent(flow.start(invitation["link"]), signed_in_tenant=attacker)
    r = flow.callback(f"{url}&{urlencode({'tenant': victim, 'admin_consent': 'True'})}")
    assert r.status_code == 200 and "You are connected" in r.text
    assert repo.get(attacker).status == TenantStatus.ACTIVE
    assert flow.invitation(invitation["id"])["tenant_id"] == attacker
    after = repo.get(victim)
    assert (after.status if after else None) == (before.status if before else None)
    assert _notices(storage_env, victim) == []


@pytest.mark.parametrize("case", ["paused", "offboarded", "consent_revoked", "unavailable"])
def test_a_known_tenant_needs_a_reconsent_invitation(flow, app_host, sim, storage_env, case):
    """Its own admin signing in through an open invitation does not bring it back."""
    _, repo = app_host
    victim = _victim(flow, sim, repo, case)
    invitation, _, r = flow.onboard(victim)
    assert r.status_code == 409 and "already known" in r.text and "new invitation" in r.text
    assert repo.get(victim).status == TenantStatus(case)
    assert flow.invitation(invitation["id"])["status"] == "open"
    assert _notices(storage_env, victim) == []
    # a re-consent invitation made for it does
    made = flow.reconsent(victim, contact_email="it@victim.example")
    assert made.status_code == 201, made.text
    assert made.json()["reconsent_for"] == victim
    assert urlsplit(flow.start(made.json()["link"])).path.startswith(f"/{victim}/")
    _, _, r = flow.onboard(victim, made.json())
    assert r.status_code == 200 and "You are connected" in r.text
    tenant = repo.get(victim)
    assert tenant.status == TenantStatus.ACTIVE
    assert tenant.status_reason == "consent granted again"
    assert len(_notices(storage_env, victim)) == 1
    assert flow.invitation(made.json()["id"])["status"] == "used"


def test_an_active_tenant_keeps_the_invitation_and_gets_no_notice(flow, app_host, sim,
                                                                  storage_env):
    """Finding (e) through a real sign-in: the admin of an already active tenant."""
    _, repo = app_host
    active = _victim(flow, sim, repo, "active")
    invitation, _, r = flow.onboard(active)
    assert r.status_code == 200 and "Already connected" in r.text
    assert "Nothing was changed" in r.text
    assert flow.invitation(invitation["id"])["status"] == "open"
    assert _notices(storage_env, active) == []
    assert repo.get(active).status_reason == ""  # untouched


def test_the_home_tenant_is_refused(flow, app_host, sim, storage_env):
    """Finding (d): the MSSP's own tenant is not a customer."""
    _, repo = app_host
    invitation = flow.invite()
    r = flow.forged(invitation, DEFAULT_MSSP_TENANT)
    assert repo.get(DEFAULT_MSSP_TENANT) is None
    invitation, _, r = flow.onboard(DEFAULT_MSSP_TENANT, invitation)
    assert r.status_code == 403 and "own organization" in r.text
    assert repo.get(DEFAULT_MSSP_TENANT) is None
    assert flow.invitation(invitation["id"])["status"] == "open"
    assert _notices(storage_env, DEFAULT_MSSP_TENANT) == []


@pytest.mark.parametrize("extra_settings", [{"MSSP_TENANT_ID": DEFAULT_MSSP_TENANT,
                                             "ONBOARDING_ALLOW_HOME_TENANT": "true"}])
def test_the_home_tenant_when_a_setting_allows_it(flow, app_host, storage_env):
    _, repo = app_host
    if repo.get(DEFAULT_MSSP_TENANT):  # from an earlier test: start from scratch
        tables.table(storage_env, tables.TENANTS).delete_entity("tenant",
                                                                DEFAULT_MSSP_TENANT)
    _, _, r = flow.onboard(DEFAULT_MSSP_TENANT)
    assert r.status_code == 200 and "You are connected" in r.text
    assert repo.get(DEFAULT_MSSP_TENANT).status == TenantStatus.ACTIVE
    tables.table(storage_env, tables.TENANTS).delete_entity("tenant", DEFAULT_MSSP_TENANT)


@pytest.mark.parametrize(("tamper", "why"), [
    ({"claims": {"nonce": "from-another-attempt"}}, "wrong nonce"),
    ({"foreign_key": True}, "signed by a key the issuer does not publish"),
    ({"claims": {"aud": "11111111-2222-3333-4444-555555555555"}}, "for another app"),
])
def test_an_id_token_not_for_this_sign_in_registers_nothing(flow, app_host, sim, tamper,
                                                            why):
    customer = sim.add_tenant(f"Tampered Co {why}")["id"]
    invitation = flow.invite()
    url = flow.consent(flow.start(invitation["link"]), signed_in_tenant=customer)
    sim.tamper_next_id_token(**tamper)
    r = flow.callback(url)
    assert r.status_code == 400 and "could not confirm who signed in" in r.text, why
    assert app_host[1].get(customer) is None
    assert flow.invitation(invitation["id"])["status"] == "open"


def test_an_expired_code_registers_nothing(flow, app_host, sim):
    customer = sim.add_tenant("Slow Co")["id"]
    url = flow.consent(flow.start(flow.invite()["link"]), signed_in_tenant=customer)
    sim.advance_clock(601)  # Entra's codes last ten minutes
    r = flow.callback(url)
    assert r.status_code == 400 and "took too long" in r.text
    assert app_host[1].get(customer) is None


def test_signing_keys_roll_over(flow, app_host, sim):
    first = sim.add_tenant("Rolling Co 1")["id"]
    assert flow.onboard(first)[2].status_code == 200  # the app has cached the key set
    sim.rotate_keys(keep_old=False)
    second = sim.add_tenant("Rolling Co 2")["id"]
    r = flow.onboard(second)[2]
    assert r.status_code == 200, r.text
    assert app_host[1].get(second).status == TenantStatus.ACTIVE


def test_reconsent_invitations_through_the_api(flow, app_host, sim, capsys):
    _, repo = app_host
    active = _victim(flow, sim, repo, "active")
    r = flow.reconsent(active)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "status"
    paused = _victim(flow, sim, repo, "paused")
    r = flow.reconsent(paused, contact_email="not an address", expires_in_days=0, extra=1)
    assert r.status_code == 400
    assert {e["field"] for e in r.json()["errors"]} == {"contact_email", "expires_in_days",
                                                         "extra"}
    r = flow.reconsent("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert r.status_code == 404
    r = flow.reconsent(paused)
    assert r.status_code == 201 and r.json()["display_name"] == "Victim paused"
    assert r.json()["expected_tenant"] == paused == r.json()["reconsent_for"]
    # from a shell
    from tools.mssp import main

    args = ["--url", flow.base, "--key", FUNCTION_KEY, "reconsent"]
    assert main([*args, paused, "--email", "it@victim.example", "--days", "3"]) == 0
    made = json.loads(capsys.readouterr().out)
    assert made["reconsent_for"] == paused and made["contact_email"] == "it@victim.example"
    assert main([*args, active]) == 1
    assert "needs no new consent" in capsys.readouterr().out


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
        assert urlsplit(consent_url).path == f"/{expected}/oauth2/v2.0/authorize"
        assert flow.forged(invitation, intruder["id"]).status_code == 400
        # the intruder edits the sign-in URL to sign in to its own tenant instead: its
        # code is not redeemable at the named tenant's token endpoint
        edited = consent_url.replace(f"/{expected}/", "/organizations/", 1)
        r = flow.callback(flow.consent(edited, signed_in_tenant=intruder["id"]))
        assert r.status_code == 400 and "could not confirm who signed in" in r.text
    assert app_host[1].get(intruder["id"]) is None
    # the named tenant itself, by domain, goes through
    _, _, ok = flow.onboard(named["id"], expected_tenant="named.example")
    assert ok.status_code == 200


@pytest.mark.parametrize(("query", "word"), [
    ("admin_consent=True&tenant=x", "no state"),
    ("state=a&state=b&admin_consent=True", "more than once"),
    ("state=" + "s" * 5000, "too long"),
    ("code=" + "c" * 9000 + "&state=x", "too long"),
    ("code=a&code=b&state=x", "more than once"),
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
    assert location.startswith(
        f"{flow.simulator.base_url}/organizations/oauth2/v2.0/authorize?")
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
    made = flow.reconsent(customer["id"]).json()
    _, _, result = flow.onboard(customer["id"], made)
    assert result.status_code == 200
    tenant = repo.get(customer["id"])
    assert tenant.status == TenantStatus.ACTIVE
    assert tenant.status_reason == "consent granted again"
    assert tenant.display_name == "Returning Co (renamed)"
    assert _alerts(storage_env, customer["id"]) == 5  # history kept


class _Crash(Exception):
    """The worker dying between two writes of the callback."""


@pytest.mark.parametrize("where", ["before the notice", "before the invitation is used"])
def test_a_retry_after_a_crash_mid_registration_finishes_the_job(flow, app_host, sim,
                                                                 storage_env, monkeypatch,
                                                                 where):
    """Nothing lost, nothing twice: the admin opens the same link again and signs in; the
    tenant (already written) is not "already connected" but completed: one notice, the
    invitation used."""
    _, repo = app_host
    customer = sim.add_tenant(f"Crash {where}")["id"]
    real_add, real_used = OpsNotices.add, InvitationRepository.mark_used

    def dying(self, *args, **kwargs):
        raise _Crash(where)

    if where == "before the notice":
        monkeypatch.setattr(OpsNotices, "add", dying)
    else:
        monkeypatch.setattr(InvitationRepository, "mark_used", dying)
    invitation, _, crashed = flow.onboard(customer)
    assert crashed.status_code == 500
    assert repo.get(customer).status == TenantStatus.ACTIVE  # the registry was written
    assert flow.invitation(invitation["id"])["status"] == "open"
    assert len(_notices(storage_env, customer)) == (0 if where == "before the notice" else 1)

    monkeypatch.setattr(OpsNotices, "add", real_add)
    monkeypatch.setattr(InvitationRepository, "mark_used", real_used)
    _, _, again = flow.onboard(customer, invitation=invitation)
    assert again.status_code == 200 and "You are connected" in again.text
    assert len(_notices(storage_env, customer)) == 1
    used = flow.invitation(invitation["id"])
    assert used["status"] == "used" and used["tenant_id"] == customer
    _, _, third = flow.onboard(customer, invitation=flow.invite())  # a later invitation
    assert "Already connected" in third.text and len(_notices(storage_env, customer)) == 1
