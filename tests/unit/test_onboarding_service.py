"""The consent callback's decisions on the in-memory repositories, without Azurite: what
the registry allows for the signed-in tenant, what is written (tenant, notice, invitation
used) and in which order, and how a retry after a crash between two writes finishes the
job. Entra (sign-in, tokens) and Defender are small fakes at the edge; the signed state,
the single-use attempt and every registry decision are the real ones."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.microsoft.defender import DefenderError, Forbidden
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.storage.memory.tenants import (
    MemoryConsentStates,
    MemoryInvitations,
    MemoryNotices,
    MemoryTenants,
)
from shared.tenants.oidc import SignInError
from shared.tenants.onboarding import Onboarding
from shared.tenants.ops_notices import OpsNotices
from tests.helpers import settings

HOME = "0f0f0f0f-1111-4222-8333-444455556666"


def _jwt(claims: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


class FakeSignIn:
    """Entra's sign-in: the admin of `tenant` signs in; the code is exchanged once."""

    def __init__(self) -> None:
        self.tenant = ""
        self.error: SignInError | None = None
        self.authorities: list[str] = []

    def authorize_url(self, tenant: str, state: str, nonce: str, verifier: str) -> str:
        self.authorities.append(tenant)
        return f"https://login.example/{tenant}/authorize?state={state}"

    def exchange(self, tenant: str, code: str, verifier: str) -> dict:
        if self.error:
            raise self.error
        assert verifier  # the attempt's own PKCE verifier, read back from its row
        return {"id_token": code}

    def validate(self, id_token: str, nonce_digest: str) -> dict:
        assert nonce_digest
        return {"tid": self.tenant}


class FakeTokens:
    """App tokens per tenant (or domain); `refused` makes one fail as Entra would."""

    def __init__(self) -> None:
        self.refused: dict[str, TokenError] = {}
        self.domains: dict[str, str] = {}

    def token(self, tenant: str) -> str:
        if tenant in self.refused:
            raise self.refused[tenant]
        return _jwt({"tid": self.domains.get(tenant, tenant)})

    def forget(self, tenant: str) -> None:
        pass


class FakeDefender:
    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    def list_alerts(self, base: str, token: str, **query) -> list:
        self.calls += 1
        if self.error:
            raise self.error
        return []


class World:
    def __init__(self, monkeypatch) -> None:
        monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0)
        self.tenants, self.invitations = MemoryTenants(), MemoryInvitations()
        self.states, self.rows = MemoryConsentStates(), MemoryNotices()
        self.notices = OpsNotices(self.rows, "ops@mssp.example")
        self.sign_in, self.tokens, self.defender = FakeSignIn(), FakeTokens(), FakeDefender()
        self.service = Onboarding(
            settings(MSSP_NAME="Acme MSSP", MSSP_TENANT_ID=HOME), self.tokens, self.defender,
            self.tenants, self.invitations, self.states, self.notices, self.sign_in)

    def invite(self, **values):
        return self.service.create_invitation({
            "display_name": "Northwind", "contact_email": "it@northwind.example",
            "expected_tenant": "", "expires_in_days": 7, **values})

    def state(self, invitation) -> str:
        url = self.service.start(self.service.invitation(invitation.id))
        return parse_qs(urlsplit(url).query)["state"][0]

    def callback(self, state: str, tenant_id: str, **params):
        self.sign_in.tenant = tenant_id
        query = {"state": [state], "code": ["the-code"]}
        query.update({k: [v] for k, v in params.items()})
        return self.service.callback(query)

    def onboard(self, tenant_id: str, invitation=None):
        invitation = invitation or self.invite()
        return invitation, self.callback(self.state(invitation), tenant_id)

    def notices_of(self, tenant_id: str) -> list[dict]:
        return [r for r in self.rows.recent(100) if r["Tenant"] == tenant_id]


@pytest.fixture
def world(monkeypatch) -> World:
    return World(monkeypatch)


def _new() -> str:
    return str(uuid.uuid4())


def test_a_new_tenant_is_verified_registered_noticed_and_the_invitation_used(world):
    tenant_id = _new()
    invitation, outcome = world.onboard(tenant_id)
    assert (outcome.status, outcome.kind, outcome.tenant_id) == (200, "connected", tenant_id)
    tenant = world.tenants.get(tenant_id)
    assert (tenant.status, tenant.display_name, tenant.status_reason) == (
        TenantStatus.ACTIVE, "Northwind", "consent granted")
    assert world.defender.calls == 1
    (notice,) = world.notices_of(tenant_id)
    assert notice["Kind"] == "tenant_onboarded" and notice["To"] == "ops@mssp.example"
    assert "it@northwind.example" in notice["Body"] and " again" not in notice["Body"]
    used = world.invitations.get(invitation.id)
    assert (used.status, used.tenant_id) == ("used", tenant_id)
    assert used.notice_key == notice["RowKey"]  # the key chosen before the tenant


def test_a_replayed_state_is_refused_and_changes_nothing(world):
    tenant_id = _new()
    invitation = world.invite()
    state = world.state(invitation)
    assert world.callback(state, tenant_id).kind == "connected"
    world.tenants.pause(tenant_id, "by the MSSP")
    again = world.callback(state, tenant_id)
    assert (again.status, again.kind) == (409, "replayed")
    assert world.tenants.get(tenant_id).status == TenantStatus.PAUSED
    assert len(world.notices_of(tenant_id)) == 1


def test_a_state_a_racing_replay_used_after_it_was_read_is_refused(world, monkeypatch):
    """Both callbacks read the attempt unused; the ETag lets only the first one on."""
    real_get = world.states.get

    def read_then_raced(invitation_id, attempt):
        row = real_get(invitation_id, attempt)
        assert world.states.consume(real_get(invitation_id, attempt))  # the replay wins
        return row

    monkeypatch.setattr(world.states, "get", read_then_raced)
    tenant_id = _new()
    outcome = world.onboard(tenant_id)[1]
    assert (outcome.status, outcome.kind) == (409, "replayed")
    assert world.tenants.get(tenant_id) is None and world.defender.calls == 0


@pytest.mark.parametrize("state", ["", "a.b.c", "a.b.9999999999.forged",
                                   "x" * 600])
def test_a_missing_bad_or_forged_state_registers_nothing(world, state):
    outcome = world.callback(state, _new())
    assert outcome.status == 400 and outcome.kind in ("bad_request", "bad_state")
    assert list(world.tenants.all()) == []


def test_an_unknown_attempt_is_refused(world):
    invitation = world.invite()
    state = world.state(invitation)
    world.states.rows.clear()
    assert world.callback(state, _new()).kind == "bad_state"


def test_an_expired_invitation_registers_nothing(world):
    invitation = world.invite()
    state = world.state(invitation)
    world.invitations.rows[invitation.id].expires_at = datetime.now(UTC) - timedelta(1)
    outcome = world.callback(state, _new())
    assert (outcome.status, outcome.kind) == (400, "expired")
    assert list(world.tenants.all()) == []


def test_a_declined_consent_leaves_the_invitation_usable(world):
    invitation = world.invite()
    outcome = world.callback(world.state(invitation), _new(), error="access_denied")
    assert (outcome.status, outcome.kind) == (200, "declined")
    assert world.invitations.get(invitation.id).status == "open"
    assert list(world.tenants.all()) == [] and world.defender.calls == 0


def test_the_home_tenant_is_refused(world):
    outcome = world.onboard(HOME)[1]
    assert (outcome.status, outcome.kind) == (403, "home_tenant")
    assert world.tenants.get(HOME) is None


def test_an_invitation_for_another_tenant_is_refused(world):
    invitation = world.invite(expected_tenant=_new())
    outcome = world.onboard(_new(), invitation)[1]
    assert (outcome.status, outcome.kind) == (403, "wrong_tenant")
    assert list(world.tenants.all()) == [] and world.defender.calls == 0


def test_a_domain_must_resolve_to_the_signed_in_tenant(world):
    tenant_id, other = _new(), _new()
    world.tokens.domains["northwind.example"] = other
    invitation = world.invite(expected_tenant="northwind.example")
    assert world.onboard(tenant_id, invitation)[1].kind == "wrong_tenant"
    world.tokens.domains["northwind.example"] = tenant_id
    assert world.onboard(tenant_id, world.invite(expected_tenant="northwind.example")
                         )[1].kind == "connected"


def test_a_known_tenant_needs_a_reconsent_invitation(world):
    tenant = world.tenants.add(Tenant(_new(), "Paused Co"))
    world.tenants.pause(tenant.tenant_id, "by the MSSP")
    outcome = world.onboard(tenant.tenant_id)[1]
    assert (outcome.status, outcome.kind) == (409, "known_tenant")
    assert world.tenants.get(tenant.tenant_id).status == TenantStatus.PAUSED


def test_a_reconsent_invitation_reactivates_its_tenant_with_a_clean_record(world):
    tenant = world.tenants.add(Tenant(_new(), "Returning Co"))
    world.tenants.mark_failing(tenant.tenant_id, "DefenderError: 403", 4)
    world.tenants.stop(tenant.tenant_id, TenantStatus.CONSENT_REVOKED, "app_not_found",
                       "AADSTS700016")
    with pytest.raises(ValueError):  # an active tenant needs no new consent
        world.service.create_reconsent(Tenant(_new(), "Active Co"),
                                       {"contact_email": "", "expires_in_days": 7})
    invitation = world.service.create_reconsent(world.tenants.get(tenant.tenant_id), {
        "contact_email": "new@returning.example", "expires_in_days": 3})
    assert world.onboard(_new(), invitation)[1].kind == "wrong_tenant"  # only its tenant
    assert world.sign_in.authorities[-1] == tenant.tenant_id  # sign-in in that tenant

    outcome = world.onboard(tenant.tenant_id, invitation)[1]
    assert outcome.kind == "connected"
    back = world.tenants.get(tenant.tenant_id)
    assert (back.status, back.status_reason) == (TenantStatus.ACTIVE, "consent granted again")
    assert (back.consecutive_failures, back.last_error) == (0, "")
    (notice,) = world.notices_of(tenant.tenant_id)
    assert "active again" in notice["Body"]


def test_an_active_tenant_is_already_connected_and_the_invitation_stays_open(world):
    tenant = world.tenants.add(Tenant(_new(), "Active Co"))
    invitation, outcome = world.onboard(tenant.tenant_id)
    assert (outcome.status, outcome.kind) == (200, "already_connected")
    assert "Active Co" in outcome.message
    assert world.invitations.get(invitation.id).status == "open"
    assert world.notices_of(tenant.tenant_id) == [] and world.defender.calls == 0


def test_no_defender_registers_nothing_and_keeps_the_invitation(world):
    world.defender.error = Forbidden("403: not licensed", 403)
    invitation, outcome = world.onboard(_new())
    assert (outcome.status, outcome.kind) == (422, "no_defender")
    assert list(world.tenants.all()) == []
    assert world.invitations.get(invitation.id).admitting == ""  # nothing begun


def test_defender_not_answering_registers_nothing(world):
    world.defender.error = DefenderError("503", 503)
    outcome = world.onboard(_new())[1]
    assert (outcome.status, outcome.kind) == (503, "unavailable")
    assert list(world.tenants.all()) == []


def test_a_token_that_cannot_be_had_is_not_verified(world):
    tenant_id = _new()
    world.tokens.refused[tenant_id] = TokenError("AADSTS50020", 50020, None, "token_error")
    outcome = world.onboard(tenant_id)[1]
    assert (outcome.status, outcome.kind) == (400, "not_verified")
    assert world.tenants.get(tenant_id) is None


@pytest.mark.parametrize(("kind", "status", "outcome"), [
    ("expired", 400, "expired"), ("replayed", 409, "replayed"),
    ("app_error", 503, "unavailable"), ("unavailable", 503, "unavailable"),
    ("invalid", 400, "not_verified")])
def test_a_failed_sign_in_registers_nothing(world, kind, status, outcome):
    world.sign_in.error = SignInError(kind, "no")
    result = world.onboard(_new())[1]
    assert (result.status, result.kind) == (status, outcome)
    assert list(world.tenants.all()) == []


def test_a_tenant_registered_meanwhile_by_another_invitation(world):
    """The registry refuses the second add: this invitation's admission is abandoned
    (nothing to finish later) and the admin is told it is connected already."""
    tenant_id = _new()
    real_add = world.tenants.add

    def racing_add(tenant):
        real_add(Tenant(tenant_id, "Registered by the other"))
        return real_add(tenant)

    world.tenants.add = racing_add
    invitation, outcome = world.onboard(tenant_id)
    assert outcome.kind == "already_connected" and "Registered by the other" in outcome.message
    stored = world.invitations.get(invitation.id)
    assert (stored.status, stored.admitting, stored.notice_key) == ("open", "", "")
    assert world.notices_of(tenant_id) == []


class _Crash(Exception):
    """The worker dying between two writes of the callback."""


def _die(*args, **kwargs):
    raise _Crash()


@pytest.mark.parametrize("where", ["before the notice", "before the invitation is used"])
def test_a_retry_after_a_crash_mid_registration_finishes_the_job(world, monkeypatch, where):
    """As the e2e test of the same name, on the fakes: the retry of the same invitation by
    the same tenant is not "already connected" but completed, with one notice."""
    tenant_id = _new()
    target = (world.notices, "add") if where == "before the notice" else (
        world.invitations, "mark_used")
    monkeypatch.setattr(*target, _die)
    invitation = world.invite()
    with pytest.raises(_Crash):
        world.onboard(tenant_id, invitation)
    assert world.tenants.get(tenant_id).status == TenantStatus.ACTIVE  # registry written
    assert world.invitations.get(invitation.id).status == "open"
    assert world.invitations.get(invitation.id).admitting == tenant_id
    assert len(world.notices_of(tenant_id)) == (0 if where == "before the notice" else 1)

    monkeypatch.undo()
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0)
    outcome = world.onboard(tenant_id, invitation)[1]
    assert (outcome.status, outcome.kind) == (200, "connected")
    assert world.defender.calls == 1  # finishing needs no second verification
    assert len(world.notices_of(tenant_id)) == 1
    used = world.invitations.get(invitation.id)
    assert (used.status, used.tenant_id) == ("used", tenant_id)
    third = world.onboard(tenant_id)[1]  # a later invitation
    assert third.kind == "already_connected" and len(world.notices_of(tenant_id)) == 1


def test_a_crashed_admission_is_finished_only_by_the_tenant_it_admitted(world, monkeypatch):
    tenant_id = _new()
    monkeypatch.setattr(world.invitations, "mark_used", _die)
    invitation = world.invite()
    with pytest.raises(_Crash):
        world.onboard(tenant_id, invitation)
    monkeypatch.undo()
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0)
    other = world.tenants.add(Tenant(_new(), "Other Co"))
    assert world.onboard(other.tenant_id, invitation)[1].kind == "already_connected"
    assert world.invitations.get(invitation.id).status == "open"
