"""Read-only or triage access (issue 20, item 4), on the fakes: the triage app's settings,
the access decision from the token's roles, invitations that ask for a level, the consent
through that level's app, re-consent that upgrades or downgrades, and the worker fetching
with the tokens of the app the tenant consented to."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from shared.config import SettingsError
from shared.ingest.fanout import seen
from shared.ingest.hold import seen_tenant
from shared.messages import FetchRequest, TenantSeen
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.tenants import access
from shared.tenants.consent_decision import Decision, decide
from shared.tenants.invitations import parse_invitation, parse_reconsent
from shared.tenants.onboarding import ConsentApp
from shared.validation import ValidationError
from tests.helpers import CLIENT_ID, settings
from tests.unit.test_ingestor import FakeTokens as WorkerTokens
from tests.unit.test_ingestor import World as IngestWorld
from tests.unit.test_onboarding_service import FakeSignIn, FakeTokens, World

TRIAGE_ID = "7c2e4d1f-8a3b-4c5d-9e6f-1a2b3c4d5e6f"
TRIAGE = {"MSSP_TRIAGE_CLIENT_ID": TRIAGE_ID, "MSSP_TRIAGE_CLIENT_SECRET": "tri-secret"}


def _token(**claims) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


# settings ----------------------------------------------------------------------------------
def test_the_triage_app_is_optional_and_replaces_the_credentials_when_asked_for():
    plain = settings().identity
    assert not plain.triage_enabled and plain.app("read") is plain
    with pytest.raises(ValueError, match="MSSP_TRIAGE_CLIENT_ID"):
        plain.app("triage")
    identity = settings(**TRIAGE).identity
    triage = identity.app("triage")
    assert (triage.client_id, triage.client_secret) == (TRIAGE_ID, "tri-secret")
    assert triage.authority_host == identity.authority_host and not triage.triage_enabled
    assert "tri-secret" not in repr(identity)  # a secret, never in a log line


@pytest.mark.parametrize(("overrides", "setting"), [
    ({"MSSP_TRIAGE_CLIENT_ID": "not-a-guid", "MSSP_TRIAGE_CLIENT_SECRET": "s"},
     "MSSP_TRIAGE_CLIENT_ID"),
    ({"MSSP_TRIAGE_CLIENT_ID": CLIENT_ID, "MSSP_TRIAGE_CLIENT_SECRET": "s"},
     "MSSP_TRIAGE_CLIENT_ID"),  # one app cannot be both: consent grants all it declares
    ({"MSSP_TRIAGE_CLIENT_ID": TRIAGE_ID}, "MSSP_TRIAGE_CLIENT_SECRET"),
    ({"MSSP_TRIAGE_CLIENT_SECRET": "s"}, "MSSP_TRIAGE_CLIENT_ID"),
    ({"MSSP_TRIAGE_CLIENT_ID": TRIAGE_ID,
      "MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH": "/nonexistent.pem"},
     "MSSP_TRIAGE_CLIENT_CERTIFICATE_PATH"),
])
def test_bad_triage_app_settings_are_named(overrides, setting):
    with pytest.raises(SettingsError) as err:
        settings(**overrides)
    assert err.value.setting == setting


# the access decision -------------------------------------------------------------------------
def test_triage_only_through_the_triage_app_with_read_write_in_the_roles():
    assert access.granted("triage", ["Alert.ReadWrite.All"]) == access.Granted(
        "triage", "", "triage")
    assert access.granted("triage", ["Alert.Readwrite.All"]).access == "triage"  # 2 spellings
    read = access.granted("triage", ["Alert.Read.All"])
    assert (read.access, read.app) == ("read", "triage")  # its token is still the triage app's
    assert "Alert.Read.All" in read.reason and "Alert.ReadWrite.All" in read.reason
    assert "no Defender roles" in access.granted("triage", []).reason
    # the read app is read-only, whatever its token says
    plain = access.granted("read", ["Alert.ReadWrite.All"])
    assert (plain.access, plain.app) == ("read", "read") and "read-only" in plain.reason


@pytest.mark.parametrize(("token", "roles"), [
    (_token(roles=["Alert.Read.All", 7]), ["Alert.Read.All"]),
    (_token(roles="Alert.ReadWrite.All"), []), (_token(tid="t"), []),
    ("not-a-jwt", []), ("a.!!!.c", []), (_token() + "x", []),
])
def test_the_roles_are_read_from_the_access_tokens_payload(token, roles):
    assert access.token_roles(token) == roles


def test_an_active_tenant_changes_access_only_through_its_reconsent_invitation():
    tid = str(uuid.uuid4())

    def one(reconsent: str, changes: bool) -> Decision:
        return decide(tid, expected_tenant="", reconsent_for=reconsent,
                      registered=TenantStatus.ACTIVE, home_tenant="",
                      allow_home_tenant=False, changes_access=changes)

    assert one(tid, True) == Decision.CHANGE_ACCESS
    assert one(tid, False) == Decision.ALREADY_ACTIVE
    assert one("", True) == Decision.ALREADY_ACTIVE  # an open invitation changes nothing


def test_invitation_bodies_take_an_access_level():
    body = {"display_name": "N", "contact_email": "it@n.example"}
    assert parse_invitation(body)["access"] == "read"
    assert parse_invitation({**body, "access": "triage"})["access"] == "triage"
    with pytest.raises(ValidationError, match="access"):
        parse_invitation({**body, "access": "write"})
    assert parse_reconsent({"access": "triage"})["access"] == "triage"
    assert parse_reconsent(None)["access"] == "read"


# onboarding through the level's app --------------------------------------------------------
class RoleTokens(FakeTokens):
    """An app's tokens whose `roles` are what the tenant granted that app."""

    def __init__(self, roles: list[str]) -> None:
        super().__init__()
        self.roles, self.asked = roles, []

    def token(self, tenant: str) -> str:
        self.asked.append(tenant)
        super().token(tenant)
        return _token(tid=self.domains.get(tenant, tenant), roles=self.roles)


class TriageWorld(World):
    def __init__(self, monkeypatch, triage: bool = True) -> None:
        super().__init__(monkeypatch)
        self.tokens = RoleTokens(["Alert.Read.All"])
        self.triage_sign_in = FakeSignIn()
        self.triage_tokens = RoleTokens(["Alert.ReadWrite.All"])
        service = self.service
        app = ConsentApp(self.triage_tokens, self.triage_sign_in) if triage else None
        self.service = type(service)(
            settings(MSSP_NAME="Acme MSSP", **(TRIAGE if triage else {})), self.tokens,
            self.defender, self.tenants, self.invitations, self.states, self.notices,
            self.sign_in, triage=app)

    def callback(self, state: str, tenant_id: str, **params):
        self.triage_sign_in.tenant = tenant_id
        return super().callback(state, tenant_id, **params)


@pytest.fixture
def world(monkeypatch) -> TriageWorld:
    return TriageWorld(monkeypatch)


def _new() -> str:
    return str(uuid.uuid4())


def test_a_triage_invitation_signs_in_and_verifies_with_the_triage_app(world):
    tenant_id = _new()
    invitation, outcome = world.onboard(tenant_id, world.invite(access="triage"))
    assert outcome.kind == "connected" and "update their status" in outcome.message
    assert world.triage_sign_in.authorities and not world.sign_in.authorities
    assert world.triage_tokens.asked == [tenant_id] and world.tokens.asked == []
    tenant = world.tenants.get(tenant_id)
    assert (tenant.access, tenant.access_reason, tenant.consent_app) == ("triage", "",
                                                                         "triage")
    (notice,) = world.notices_of(tenant_id)
    assert "triage access (Alert.ReadWrite.All)" in notice["Body"]
    permission, client_id = world.service.terms(invitation)
    assert (permission.role, client_id) == ("Alert.ReadWrite.All", TRIAGE_ID)


def test_a_read_only_invitation_uses_the_main_app(world):
    tenant_id = _new()
    invitation, outcome = world.onboard(tenant_id)
    assert outcome.kind == "connected" and "cannot update" not in outcome.message
    assert world.sign_in.authorities and not world.triage_sign_in.authorities
    tenant = world.tenants.get(tenant_id)
    assert (tenant.access, tenant.consent_app) == ("read", "read")
    assert "read-only" in tenant.access_reason
    permission, client_id = world.service.terms(invitation)
    assert (permission.role, client_id) == ("Alert.Read.All", CLIENT_ID)


def test_a_triage_app_granted_read_roles_only_makes_a_read_only_tenant(world):
    world.triage_tokens.roles = ["Alert.Read.All"]
    tenant_id = _new()
    outcome = world.onboard(tenant_id, world.invite(access="triage"))[1]
    assert outcome.kind == "connected" and "cannot update alerts" in outcome.message
    tenant = world.tenants.get(tenant_id)
    assert (tenant.access, tenant.consent_app) == ("read", "triage")
    assert "not Alert.ReadWrite.All" in tenant.access_reason
    assert "read-only access: the triage app" in world.notices_of(tenant_id)[0]["Body"]


def test_without_a_triage_app_invitations_are_read_only_and_say_why(monkeypatch):
    world = TriageWorld(monkeypatch, triage=False)
    assert "MSSP_TRIAGE_CLIENT_ID" in world.service.why_not_triage()
    with pytest.raises(ValidationError) as err:
        world.invite(access="triage")
    assert err.value.errors[0]["field"] == "access"
    assert world.invitations.all() == []


def test_reconsent_upgrades_an_active_tenant_and_keeps_its_record(world):
    tenant_id = _new()
    world.onboard(tenant_id)
    before = world.tenants.get(tenant_id)
    with pytest.raises(ValueError, match="no new consent"):  # read already
        world.service.create_reconsent(before, {"contact_email": "", "expires_in_days": 7})
    upgrade = world.service.create_reconsent(before, {
        "contact_email": "", "expires_in_days": 7, "access": "triage"})
    assert (upgrade.access, upgrade.reconsent_for) == ("triage", tenant_id)
    outcome = world.onboard(tenant_id, upgrade)[1]
    assert outcome.kind == "connected"
    after = world.tenants.get(tenant_id)
    assert (after.access, after.consent_app, after.access_reason) == ("triage", "triage", "")
    assert (after.created_at, after.status) == (before.created_at, TenantStatus.ACTIVE)
    assert world.invitations.get(upgrade.id).status == "used"
    # and back: a downgrade is the same, with the read app
    down = world.service.create_reconsent(after, {"contact_email": "", "expires_in_days": 7,
                                                  "access": "read"})
    assert world.onboard(tenant_id, down)[1].kind == "connected"
    assert (world.tenants.get(tenant_id).access,
            world.tenants.get(tenant_id).consent_app) == ("read", "read")


def test_a_used_upgrade_invitation_retried_after_a_crash_finishes_once(world, monkeypatch):
    tenant_id = _new()
    world.onboard(tenant_id)
    upgrade = world.service.create_reconsent(world.tenants.get(tenant_id), {
        "contact_email": "", "expires_in_days": 7, "access": "triage"})
    real = world.invitations.mark_used
    monkeypatch.setattr(world.invitations, "mark_used",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("worker died")))
    with pytest.raises(RuntimeError):
        world.onboard(tenant_id, upgrade)
    monkeypatch.setattr(world.invitations, "mark_used", real)
    outcome = world.onboard(tenant_id, world.invitations.get(upgrade.id))[1]
    assert outcome.kind == "connected"
    assert world.tenants.get(tenant_id).access == "triage"
    assert len(world.notices_of(tenant_id)) == 2  # the first consent's, and this one's


# the worker's tokens -----------------------------------------------------------------------
def test_the_fetch_message_carries_the_app_and_old_messages_mean_read():
    tenant = Tenant(_new(), "Contoso", consent_app="triage")
    tenant.etag = "W/1"
    request = FetchRequest(tenant.tenant_id, seen=seen(tenant))
    parsed = FetchRequest.parse(request.to_message())
    assert parsed.seen.consent_app == "triage"
    assert seen_tenant(parsed).consent_app == "triage"
    plain = TenantSeen("Contoso", "", 0, "W/1")
    assert "app" not in plain.dump()  # unchanged for read tenants
    assert TenantSeen.parse(plain.dump()).consent_app == "read"


class CountingTokens(WorkerTokens):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def token(self, tenant_id: str) -> str:
        self.asked.append(tenant_id)
        return super().token(tenant_id)


def test_a_triage_tenant_is_fetched_with_the_triage_apps_tokens_without_a_read(monkeypatch):
    world = IngestWorld()
    world.ingestor.triage_tokens = triage = CountingTokens()
    world.tokens = world.ingestor.tokens = read = CountingTokens()
    world.tenants.merge(world.tenant.tenant_id, consent_app="triage", access="triage")
    world.add_alerts(2)
    world.fetch()
    reads: list[str] = []
    real_get = world.tenants.get
    monkeypatch.setattr(world.tenants, "get", lambda tid: reads.append(tid) or real_get(tid))
    request = FetchRequest(world.tenant.tenant_id,
                           seen=seen(real_get(world.tenant.tenant_id)))
    run = world.ingestor.run(request)
    assert (run.outcome, run.unchanged) == ("success", 2)
    assert reads == []  # the idle fetch still reads no tenant: the message says which app
    assert read.asked == [] and triage.asked == [world.tenant.tenant_id] * 2
    # a read tenant (or no triage app configured) keeps the main app's
    world.tenants.merge(world.tenant.tenant_id, consent_app="read")
    world.ingestor.run(FetchRequest(world.tenant.tenant_id))
    assert read.asked == [world.tenant.tenant_id]


def test_a_run_with_the_app_the_tenant_left_is_skipped_not_a_revoked_consent():
    world = IngestWorld()
    world.add_alerts(1)
    request = FetchRequest(world.tenant.tenant_id,
                           seen=seen(world.tenants.get(world.tenant.tenant_id)))  # read app
    world.tenants.record_grant(world.tenant.tenant_id, "triage", "", "triage")  # upgraded
    world.tokens.refuse.append(TokenError("AADSTS700016", 700016,
                                          TenantStatus.CONSENT_REVOKED, "app_not_found"))
    run = world.ingestor.run(request)
    assert (run.outcome, run.error) == ("skipped", "the tenant now trusts the triage app")
    tenant = world.tenants.get(world.tenant.tenant_id)
    assert tenant.status == TenantStatus.ACTIVE and tenant.consecutive_failures == 0
    assert tenant.fetch_queued_at is None  # the next fan-out queues it again
    # the same refusal for the app the tenant does trust still stops it
    world.tokens.refuse.append(TokenError("AADSTS700016", 700016,
                                          TenantStatus.CONSENT_REVOKED, "app_not_found"))
    world.tenants.record_grant(world.tenant.tenant_id, "read", "asked", "read")
    world.ingestor.run(FetchRequest(world.tenant.tenant_id))
    assert world.tenants.get(world.tenant.tenant_id).status == TenantStatus.CONSENT_REVOKED


def test_an_access_change_of_an_active_tenant_keeps_its_fetch_state(world):
    tenant_id = _new()
    world.onboard(tenant_id)
    world.tenants.mark_requeued(tenant_id)  # a fetch in flight
    queued = world.tenants.get(tenant_id).fetch_queued_at
    upgrade = world.service.create_reconsent(world.tenants.get(tenant_id), {
        "contact_email": "", "expires_in_days": 7, "access": "triage"})
    assert world.onboard(tenant_id, upgrade)[1].kind == "connected"
    after = world.tenants.get(tenant_id)
    assert after.access == "triage" and after.fetch_queued_at == queued
