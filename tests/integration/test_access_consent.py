"""Access levels through the simulator over HTTPS (issue 20, item 4): a read-only or triage
invitation signs in with its own app registration, the tenant's access comes from the roles
of that app's token, the worker fetches with that app's tokens, and a re-consent link
upgrades a known tenant, keeping its alerts."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.config import Settings
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import TokenError, Tokens
from shared.model import Tenant
from shared.storage import tables
from shared.storage.invitations import ConsentStateRepository, InvitationRepository
from shared.tenants.access import token_roles
from shared.tenants.oidc import OpenIdClient
from shared.tenants.onboarding import ConsentApp, Onboarding
from shared.tenants.ops_notices import OpsNotices
from tests.integration.ingest_fixtures import PIPELINE_SETTINGS, ingest_env

DEFENDER = "https://api.securitycenter.microsoft.com"


@pytest.fixture(autouse=True)
def quick_verification(monkeypatch):
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0.05)


class Consent:
    """The MSSP's onboarding service (its real wiring, fresh credentials) and a customer
    admin's browser on the simulator's sign-in page."""

    def __init__(self, simulator, pipeline) -> None:
        self.simulator, self.ca = simulator, str(simulator.config.ca_path)
        storage = pipeline.storage
        settings = Settings.from_env(ingest_env(
            simulator, storage, PUBLIC_BASE_URL="https://mssp.example", **PIPELINE_SETTINGS))
        identity, redirect = settings.identity, settings.onboarding.redirect_uri
        triage = identity.app("triage")
        self.service = Onboarding(
            settings, Tokens(identity), DefenderClient(10, identity.ca_bundle),
            pipeline.tenants, InvitationRepository(tables.table(storage, tables.INVITATIONS)),
            ConsentStateRepository(tables.table(storage, tables.CONSENT_STATES)),
            OpsNotices.on(storage, ""), OpenIdClient(identity, redirect),
            triage=ConsentApp(Tokens(triage), OpenIdClient(triage, redirect)))

    def invite(self, **values):
        return self.service.create_invitation({
            "display_name": "Access Co", "contact_email": "it@access.example",
            "expected_tenant": "", "expires_in_days": 7, **values})

    def accept(self, invitation, tenant_id: str) -> tuple[str, dict[str, list[str]]]:
        """Entra's consent page for the invitation (its text), and the callback's query
        after the admin of `tenant_id` accepted."""
        url = self.service.start(invitation)
        page = requests.get(url, verify=self.ca, timeout=10)
        assert page.status_code == 200, page.text
        fields = {unescape(m.group(1)): unescape(m.group(2)) for m in re.finditer(
            r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)}
        fields["signed_in_tenant"] = tenant_id
        r = requests.post(f"{self.simulator.base_url}{urlsplit(url).path}",
                          data={**fields, "decision": "accept"}, verify=self.ca, timeout=10,
                          allow_redirects=False)
        assert r.status_code == 302, r.text
        return page.text, parse_qs(urlsplit(r.headers["Location"]).query)

    def onboard(self, invitation, tenant_id: str):
        return self.service.callback(self.accept(invitation, tenant_id)[1])


@pytest.fixture
def consent(simulator, pipeline) -> Consent:
    return Consent(simulator, pipeline)


def test_a_triage_invitation_consents_to_the_triage_app_and_gives_triage(
        consent, simulator, sim, pipeline):
    created = sim.add_tenant("Access Triage Co", alerts=3)
    invitation = consent.invite(access="triage")
    page, query = consent.accept(invitation, created["id"])
    assert "Alert.ReadWrite.All" in page and "MSSP Hub triage" in page
    assert f"App ID {simulator.config.triage_client_id}" in page
    outcome = consent.service.callback(query)  # the ID token's aud: the triage app's id
    assert (outcome.kind, outcome.tenant_id) == ("connected", created["id"])
    assert sim.tenant(created["id"])["consented_apps"] == [simulator.config.triage_client_id]
    tenant = pipeline.tenants.get(created["id"])
    assert (tenant.access, tenant.consent_app, tenant.access_reason) == (
        "triage", "triage", "")
    # the worker fetches with the triage app's tokens: the read app was never consented
    run = pipeline.ingestor.run(pipeline.fanned_out(created["id"]))
    assert (run.outcome, run.new) == ("success", 3)


def test_a_read_only_invitation_consents_to_the_main_app_and_gives_read(
        consent, simulator, sim, pipeline):
    created = sim.add_tenant("Access Read Co", alerts=2)
    page, query = consent.accept(consent.invite(), created["id"])
    assert "Alert.Read.All" in page and "Alert.ReadWrite.All" not in page
    assert consent.service.callback(query).kind == "connected"
    assert sim.tenant(created["id"])["consented_apps"] == [simulator.config.client_id]
    tenant = pipeline.tenants.get(created["id"])
    assert (tenant.access, tenant.consent_app) == ("read", "read")
    assert "read-only" in tenant.access_reason
    assert pipeline.ingestor.run(pipeline.fanned_out(created["id"])).new == 2


def test_a_triage_app_granted_read_roles_only_gives_read_with_the_reason(
        consent, simulator, sim, pipeline):
    created = sim.add_tenant("Access Partial Co", alerts=1)
    _, query = consent.accept(consent.invite(access="triage"), created["id"])
    # the customer's admin trimmed the grant before the MSSP's app asked for a token
    sim.grant(created["id"], simulator.config.triage_client_id,
              {DEFENDER: ["Alert.Read.All"]})
    outcome = consent.service.callback(query)
    assert outcome.kind == "connected" and "cannot update alerts" in outcome.message
    tenant = pipeline.tenants.get(created["id"])
    assert (tenant.access, tenant.consent_app) == ("read", "triage")
    assert "granted Alert.Read.All, not Alert.ReadWrite.All" in tenant.access_reason
    # still fetched, with the only app the tenant trusts
    assert pipeline.ingestor.run(pipeline.fanned_out(created["id"])).new == 1


def test_a_reconsent_link_upgrades_a_read_tenant_and_keeps_its_alerts(
        consent, simulator, sim, pipeline):
    created = sim.add_tenant("Access Upgrade Co", consent=[simulator.config.client_id],
                             alerts=4)
    pipeline.tenants.add(Tenant(created["id"], "Access Upgrade Co"))
    assert pipeline.fetch(created["id"]).new == 4
    before = pipeline.tenants.get(created["id"])
    upgrade = consent.service.create_reconsent(before, {
        "contact_email": "it@upgrade.example", "expires_in_days": 7, "access": "triage"})
    outcome = consent.onboard(upgrade, created["id"])
    assert outcome.kind == "connected"
    after = pipeline.tenants.get(created["id"])
    assert (after.access, after.consent_app, after.created_at) == (
        "triage", "triage", before.created_at)
    assert len(pipeline.rows(created["id"])) == 4  # its data kept
    sim.generate(created["id"], 1, age_seconds=60)
    assert pipeline.ingestor.run(pipeline.fanned_out(created["id"])).new == 1
    # an already-used link changes nothing more
    assert consent.service.invitation(upgrade.id).status == "used"


def test_the_simulators_triage_app_tokens_carry_the_roles_granted(consent, simulator, sim):
    created = sim.add_tenant("Access Roles Co", consent=[simulator.config.triage_client_id])
    apps = {a["client_id"]: a for a in requests.get(
        f"{simulator.base_url}/_sim/apps", verify=consent.ca, timeout=10).json()}
    assert apps[simulator.config.triage_client_id]["name"] == "MSSP Hub triage (simulated)"
    triage = consent.service.apps["triage"].tokens
    assert token_roles(triage.token(created["id"])) == ["Alert.ReadWrite.All"]
    sim.grant(created["id"], simulator.config.triage_client_id,
              {DEFENDER: ["Alert.Read.All"]})
    triage.forget(created["id"])
    assert token_roles(triage.token(created["id"])) == ["Alert.Read.All"]
    read = consent.service.apps["read"].tokens  # never consented in this tenant
    with pytest.raises(TokenError) as refused:
        read.token(created["id"])
    assert refused.value.code == 700016
