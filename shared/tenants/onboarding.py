"""Customer onboarding: invitations, the signed consent `state`, and a callback that takes
the tenant only from a validated ID token (OpenID Connect, code + PKCE), decides what the
registry allows for it, and verifies consent with Entra and Defender before registering."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config import Settings
from shared.logsafe import clean
from shared.microsoft.defender import DefenderClient, DefenderError, Forbidden
from shared.microsoft.graph_security import (
    GRAPH_PERMISSIONS,
    GRAPH_SCOPE,
    GraphConsentMissing,
    GraphSecurityClient,
)
from shared.microsoft.identity import TokenError, Tokens
from shared.model import Tenant, TenantStatus
from shared.storage import tables
from shared.storage.errors import AlreadyExists
from shared.storage.invitations import (
    ConsentAttempt,
    ConsentStateRepository,
    InvitationRepository,
)
from shared.storage.tenants import TenantRepository
from shared.tenants.access import (
    Permission,
    granted,
    permissions,
    token_roles,
    why_not_triage,
)
from shared.tenants.consent_decision import Decision, decide
from shared.tenants.invitations import Invitation
from shared.tenants.oidc import OpenIdClient, SignInError, digest, new_secret
from shared.tenants.ops_notices import OpsNotices
from shared.validation import ValidationError

INVITATIONS, STATES = tables.INVITATIONS, tables.CONSENT_STATES  # named in storage/tables.py
# what the callback reads; anything else (`tenant`, `admin_consent`...) is ignored
CALLBACK_LIMITS = {"state": 512, "code": 8192, "session_state": 128, "error": 100,
                   "error_description": 2048, "error_uri": 512, "error_subcode": 100}


@dataclass
class Outcome:
    """What the callback page says, with its status code."""

    status: int
    kind: str
    heading: str
    message: str
    next_step: str = ""
    detail: str = ""
    tenant_id: str = ""

    @property
    def tone(self) -> str:
        return "ok" if self.kind in ("connected", "already_connected") else (
            "warn" if self.kind == "declined" else "bad")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def token_claims(token: str) -> dict[str, Any]:
    """The claims of an access token that came to us over TLS from Entra (only `tid` is
    read, as a cross-check; the tenant itself comes from the validated ID token)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@dataclass
class ConsentApp:
    """An app registration a customer consents to: the sign-in with its client id, and
    the tokens it gets for the tenant afterwards."""

    tokens: Tokens
    oidc: OpenIdClient


class Onboarding:
    VERIFY_ATTEMPTS = 4  # a new service principal can take seconds to replicate
    VERIFY_PAUSE = 2.0

    def __init__(self, settings: Settings, tokens: Tokens, client: DefenderClient,
                 tenants: TenantRepository, invitations: InvitationRepository,
                 states: ConsentStateRepository, notices: OpsNotices,
                 oidc: OpenIdClient | None = None, triage: ConsentApp | None = None,
                 graph: GraphSecurityClient | None = None) -> None:
        """`tokens` and `oidc` are the main (read) app's; `triage` the triage app's, when
        one is configured (built from the settings if not given); `graph`: Microsoft
        Graph's alerts_v2, to check a graph invitation's consent (None: not checked)."""
        self.settings, self.tokens, self.client = settings, tokens, client
        self.graph = graph
        self.cfg = settings.onboarding
        self.tenants, self.invitations, self.states = tenants, invitations, states
        self.notices = notices
        self.oidc = oidc or OpenIdClient(settings.identity, self.cfg.redirect_uri)
        self.apps = {"read": ConsentApp(tokens, self.oidc)}
        identity = settings.identity
        if triage is None and identity.triage_enabled:
            app = identity.app("triage")
            triage = ConsentApp(Tokens(app), OpenIdClient(app, self.cfg.redirect_uri))
        if triage is not None:
            self.apps["triage"] = triage

    def why_not_triage(self) -> str:
        """Why an invitation cannot ask for triage access ("" when it can)."""
        return "" if "triage" in self.apps else why_not_triage(self.settings.identity)

    def terms(self, invitation: Invitation) -> tuple[Permission, str]:
        """What the consent page says is granted: the permission, and the client id of the
        app it is granted to (the one the sign-in then uses)."""
        access = invitation.access if invitation.access in self.apps else "read"
        return (permissions(invitation.source)[access],
                self.settings.identity.app(access).client_id)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    # invitations ------------------------------------------------------------------------
    def link(self, invitation_id: str) -> str:
        return f"{self.cfg.public_base_url}/api/onboard/{invitation_id}"

    def create_invitation(self, values: dict[str, Any]) -> Invitation:
        """Raises ValidationError (on `access`) for triage without a triage app."""
        access = values.get("access", "read")
        if access == "triage" and self.why_not_triage():
            raise ValidationError([{"field": "access", "message": self.why_not_triage()}])
        source = values.get("source") or self.settings.fetch.default_source
        now = datetime.now(UTC)
        invitation = Invitation(id=secrets.token_urlsafe(24), created_at=now,
                                display_name=values["display_name"],
                                contact_email=values["contact_email"],
                                expected_tenant=values["expected_tenant"],
                                reconsent_for=values.get("reconsent_for", ""), access=access,
                                source=source,
                                expires_at=now + timedelta(days=values["expires_in_days"]))
        self.invitations.create(invitation)
        return invitation

    def create_reconsent(self, tenant: Tenant, values: dict[str, Any]) -> Invitation:
        """An invitation only `tenant` can use: how a known tenant (paused, offboarded,
        revoked, unavailable) comes back by consent, or an active one changes its access
        (read to triage, or back). Raises ValueError if it is active with that access
        already, ValidationError for triage without a triage app."""
        access = values.get("access", "read")
        source = values.get("source") or tenant.source
        if tenant.status == TenantStatus.ACTIVE and access == tenant.access \
                and source == tenant.source:
            raise ValueError(f"the tenant is active: it needs no new consent for {access} "
                             f"access from {source}")
        if source == "mde" and tenant.source == "graph":
            raise ValueError("a graph tenant does not move back to mde")
        return self.create_invitation({
            "display_name": tenant.display_name, "contact_email": values["contact_email"],
            "expected_tenant": tenant.tenant_id, "reconsent_for": tenant.tenant_id,
            "expires_in_days": values["expires_in_days"], "access": access,
            "source": source})

    def invitation(self, invitation_id: str) -> Invitation | None:
        return self.invitations.get(invitation_id)

    def list_invitations(self) -> list[Invitation]:
        return self.invitations.all()

    def revoke_invitation(self, invitation_id: str) -> Invitation | None:
        return self.invitations.revoke(invitation_id)

    # state ------------------------------------------------------------------------------
    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.cfg.state_key, payload.encode(), hashlib.sha256).digest())

    @staticmethod
    def _authority_tenant(invitation: Invitation) -> str:
        return invitation.reconsent_for or invitation.expected_tenant or "organizations"

    def start(self, invitation: Invitation) -> str:
        """Record a single-use attempt (its PKCE verifier and nonce stay here, never in a
        URL); the URL of Entra's sign-in with admin consent."""
        attempt, nonce, verifier = secrets.token_urlsafe(24), new_secret(), new_secret()
        expires = int(time.time()) + self.cfg.state_minutes * 60
        self.states.record(ConsentAttempt(invitation.id, attempt,
                                          datetime.fromtimestamp(expires, UTC), verifier,
                                          digest(nonce)))
        payload = f"{invitation.id}.{attempt}.{expires}"
        state = f"{payload}.{self._sign(payload)}"
        return self._app(invitation).oidc.authorize_url(
            self._authority_tenant(invitation), state, nonce, verifier)

    def _app(self, invitation: Invitation) -> ConsentApp:
        """The app the invitation asks consent for (a triage invitation made while a
        triage app was configured, now gone: the read app, and access "read")."""
        return self.apps.get(invitation.access) or self.apps["read"]

    def _check_state(self, state: str) -> tuple[Invitation, ConsentAttempt] | Outcome:
        """(invitation, its attempt) for a valid, unused state."""
        parts = state.split(".")
        if len(parts) != 4 or not hmac.compare_digest(self._sign(".".join(parts[:3])),
                                                      parts[3]):
            return self._refuse(400, "bad_state", "This sign-in response is not valid.")
        invitation_id, attempt, expires = parts[:3]
        if not expires.isdigit() or int(expires) < time.time():
            return self._refuse(400, "expired", "This consent attempt took too long and has "
                                "expired.", "Open your invitation link again and retry.")
        row = self.states.get(invitation_id, attempt)
        if row is None:
            return self._refuse(400, "bad_state", "This sign-in response is not valid.")
        if row.used:
            return self._refuse(409, "replayed", "This sign-in response was already used.",
                                "Open your invitation link again if you need to retry.")
        invitation = self.invitation(invitation_id)
        if invitation is None or not invitation.usable(datetime.now(UTC)):
            return self._refuse(400, "expired", "This invitation has expired or was already "
                                "used.", f"Ask {self.cfg.mssp_name} for a new invitation.")
        return invitation, row

    def _consume(self, row: ConsentAttempt) -> Outcome | None:
        """Mark the state used, exactly once: if it changed since it was read (a racing
        replay used it), the ETag fails and this one gets 409."""
        if not self.states.consume(row):
            return self._refuse(409, "replayed", "This sign-in response was already used.")
        return None

    def _refuse(self, status: int, kind: str, message: str, next_step: str = "",
                detail: str = "") -> Outcome:
        headings = {"bad_request": "Something is wrong with this link",
                    "bad_state": "Something is wrong with this link",
                    "expired": "This link has expired", "replayed": "Already used",
                    "declined": "Consent was not given", "consent_error": "Consent failed",
                    "wrong_tenant": "Wrong organization", "no_defender":
                    "Microsoft Defender for Endpoint was not found",
                    "not_verified": "We could not confirm the consent",
                    "unavailable": "Please try again",
                    "home_tenant": "This organization cannot be connected",
                    "known_tenant": "This organization needs a new invitation"}
        return Outcome(status, kind, headings.get(kind, "Something went wrong"), message,
                       next_step, clean(detail, 300) if detail else "")

    # the callback -----------------------------------------------------------------------
    def callback(self, params: Mapping[str, list[str]]) -> Outcome:
        for name, values in params.items():
            if name in CALLBACK_LIMITS and len(values) > 1:
                return self._refuse(400, "bad_request", f"The parameter '{name}' was given "
                                    "more than once.")
            if name in CALLBACK_LIMITS and len(values[0]) > CALLBACK_LIMITS[name]:
                return self._refuse(400, "bad_request", f"The parameter '{name}' is too long.")
        one = {k: v[0] for k, v in params.items() if k in CALLBACK_LIMITS}
        if not one.get("state"):
            return self._refuse(400, "bad_request", "The sign-in response has no state.",
                                "Start again from your invitation link.")
        checked = self._check_state(one["state"])
        if isinstance(checked, Outcome):
            return checked
        invitation, row = checked
        used = self._consume(row)
        if used:
            return used
        if "error" in one:
            return self._declined(one)
        if not one.get("code"):
            return self._refuse(400, "bad_request", "The sign-in response has no "
                                "authorization code.", "Start again from your invitation link.")
        try:
            oidc = self._app(invitation).oidc  # the ID token's `aud`: that app's client id
            tokens = oidc.exchange(self._authority_tenant(invitation), one["code"],
                                   row.code_verifier)
            claims = oidc.validate(tokens["id_token"], row.nonce_digest)
        except SignInError as exc:
            return self._sign_in_failed(exc)
        return self._admit(invitation, claims["tid"])

    def _sign_in_failed(self, exc: SignInError) -> Outcome:
        if exc.kind == "expired":
            return self._refuse(400, "expired", "The sign-in took too long to complete.",
                                "Open your invitation link again and retry.", str(exc))
        if exc.kind == "replayed":
            return self._refuse(409, "replayed", "This sign-in response was already used.",
                                "Open your invitation link again if you need to retry.",
                                str(exc))
        if exc.kind == "app_error":  # the MSSP's secret or certificate: not the customer's
            return self._refuse(503, "unavailable", f"{self.cfg.mssp_name}'s application "
                                "could not complete the sign-in.", f"Please tell "
                                f"{self.cfg.mssp_name}; your invitation still works.",
                                str(exc))
        if exc.kind == "unavailable":
            return self._refuse(503, "unavailable", "Microsoft's sign-in service did not "
                                "answer.", "Open your invitation link again in a few minutes.",
                                str(exc))
        return self._refuse(400, "not_verified", "We could not confirm who signed in.",
                            "Open your invitation link again and sign in with a Global "
                            "Administrator of your organization.", str(exc))

    def _admit(self, invitation: Invitation, tenant_id: str) -> Outcome:
        """What the registry allows for the signed-in tenant through this invitation."""
        wrong = self._refuse(403, "wrong_tenant", "This invitation is for a different "
                             "organization than the one you signed in to.",
                             "Sign in with an administrator of the invited organization.")
        existing = self.tenants.get(tenant_id)
        decision = decide(tenant_id, expected_tenant=invitation.expected_tenant,
                          reconsent_for=invitation.reconsent_for,
                          registered=existing.status if existing else None,
                          home_tenant=self.cfg.home_tenant,
                          allow_home_tenant=self.cfg.allow_home_tenant,
                          changes_access=existing is not None
                          and (existing.access != invitation.access
                               or existing.source != invitation.source))
        if decision == Decision.HOME_TENANT:
            return self._refuse(403, "home_tenant", f"This is {self.cfg.mssp_name}'s own "
                                "organization, which is not connected as a customer.",
                                "Sign in with an administrator of the customer organization.")
        if decision == Decision.WRONG_TENANT:
            return wrong
        if decision == Decision.KNOWN_TENANT:
            return self._refuse(409, "known_tenant", f"Your organization is already known "
                                f"to {self.cfg.mssp_name}, so this invitation cannot "
                                "connect it again.", f"Ask {self.cfg.mssp_name} for a new "
                                "invitation made for your organization.")
        if decision == Decision.ALREADY_ACTIVE:
            if existing and invitation.admitting == tenant_id and invitation.notice_key:
                return self._finish(invitation, existing)  # an attempt died half-way
            return self._already_connected(existing)
        expected = invitation.expected_tenant
        if expected and "." in expected:  # a domain: it must resolve to the same tenant
            named = self._token_for(expected, self._app(invitation))
            if isinstance(named, TokenError) or token_claims(named).get("tid") != tenant_id:
                return wrong
        return self._verify_and_register(invitation, tenant_id, existing)

    def _already_connected(self, tenant: Tenant | None) -> Outcome:
        name = tenant.display_name if tenant else "Your organization"
        return Outcome(200, "already_connected", "Already connected",
                       f"{name} is already connected to {self.cfg.mssp_name}. Nothing was "
                       "changed.", "You can close this page.")

    def _declined(self, one: dict[str, str]) -> Outcome:
        error = one["error"]
        if error in ("access_denied", "permission_denied"):
            return Outcome(200, "declined", "Consent was not given",
                           "The administrator cancelled or declined the request, so nothing "
                           "was shared.", "Your invitation still works: open it again "
                           "whenever you are ready.", clean(error, 100))
        return self._refuse(400, "consent_error", "Microsoft did not complete the consent.",
                            "Your invitation still works: open it again, and sign in with a "
                            "Global Administrator of your organization.",
                            f"{error}: {one.get('error_description', '')}")

    def _token_for(self, tenant: str, app: ConsentApp, scope: str | None = None
                   ) -> str | TokenError:
        last: TokenError | None = None
        for attempt in range(self.VERIFY_ATTEMPTS):
            try:
                return app.tokens.token(tenant, scope) if scope else app.tokens.token(tenant)
            except TokenError as exc:
                last = exc
                if exc.code not in (700016, 7000229, 65001):
                    break
                app.tokens.forget(tenant)
                if attempt + 1 < self.VERIFY_ATTEMPTS:
                    time.sleep(self.VERIFY_PAUSE)
        assert last is not None
        return last

    def _verify_and_register(self, invitation: Invitation, tenant_id: str,
                             existing: Tenant | None) -> Outcome:
        """Only a token for that tenant and one Defender call make it a customer.

        Writes in the order intent (on the invitation), registry, notice, invitation used:
        never a notice without a tenant, and a worker dying in between leaves an open
        invitation whose next use, by the same tenant, finishes the job (_finish)."""
        app = self._app(invitation)
        graph = invitation.source == "graph"
        token = self._token_for(tenant_id, app, GRAPH_SCOPE if graph else None)
        if isinstance(token, TokenError):
            if graph and token.reason == "consent_missing":
                return self._refuse(400, "not_verified", "Your organization has not granted "
                                    "the Microsoft Graph permissions "
                                    f"{' and '.join(GRAPH_PERMISSIONS)}.",
                                    "Open your invitation link again and accept them with a "
                                    "Global Administrator.", "graph_consent_missing")
            if token.reason == "no_defender":
                return self._no_defender(token)
            return self._refuse(400, "not_verified", "We could not confirm that your "
                                "organization granted the access.",
                                "Open your invitation link again and accept the permission "
                                "with a Global Administrator.", f"{token.reason}")
        if token_claims(token).get("tid") != tenant_id:
            return self._refuse(403, "wrong_tenant", "The tenant of the access token does "
                                "not match the tenant that signed in.")
        region = existing.region if existing else ""
        try:
            if graph:
                self._probe_graph(token)
            else:
                self.client.list_alerts(self.settings.identity.api_base(region), token,
                                        filter_=None, top=1, expand_evidence=False)
        except GraphConsentMissing as exc:
            return self._refuse(400, "not_verified", "Microsoft Graph refused to show your "
                                f"organization's alerts: {GRAPH_PERMISSIONS[0]} is not "
                                "granted.", "Open your invitation link again and accept the "
                                "permissions with a Global Administrator.", str(exc)[:200])
        except Forbidden as exc:
            return self._no_defender(exc)
        except DefenderError as exc:
            return self._refuse(503, "unavailable", "Microsoft Defender did not answer our "
                                "check.", "Open your invitation link again in a few minutes.",
                                str(exc))
        asked = invitation.access if app is self.apps.get(invitation.access) else "read"
        grant = granted(asked, token_roles(token), invitation.source)
        self.invitations.begin_admission(invitation, tenant_id, OpsNotices.new_key())
        if existing is None:
            try:
                existing = self.tenants.add(Tenant(
                    tenant_id, invitation.display_name, status_reason="consent granted",
                    access=grant.access, access_reason=grant.reason, consent_app=grant.app,
                    source=invitation.source))
            except AlreadyExists:  # another invitation registered it just now
                self.invitations.abandon_admission(invitation)
                return self._already_connected(self.tenants.get(tenant_id))
        elif existing.status == TenantStatus.ACTIVE:  # a change of access (or source)
            self.tenants.record_grant(tenant_id, grant.access, grant.reason, grant.app)
        else:
            self.tenants.reactivate(tenant_id, "consent granted again", access=grant.access,
                                    access_reason=grant.reason, consent_app=grant.app)
            existing = replace(existing, access=grant.access, access_reason=grant.reason,
                               consent_app=grant.app)
        if graph and existing.source != "graph":  # consented to Graph: moved (handover)
            self.tenants.move_source(tenant_id, "graph")
            existing = replace(existing, source="graph")
        return self._finish(invitation, existing)

    def _finish(self, invitation: Invitation, tenant: Tenant) -> Outcome:
        """The notice (its key chosen before the tenant was written, so written once),
        then the invitation used: a retry of the same invitation after a crash between
        any two writes comes back here and completes what is missing."""
        name, again = tenant.display_name, " again" if invitation.reconsent_for else ""
        contact = f" Contact: {invitation.contact_email}." if invitation.contact_email else ""
        named = permissions(tenant.source)
        level = (f"triage access ({named['triage'].role})"
                 if tenant.access == "triage" else "read-only access"
                 + (f": {tenant.access_reason}" if invitation.access == "triage" else ""))
        self.notices.add("tenant_onboarded", tenant.tenant_id, f"Tenant onboarded: {name}",
                         f"{name} ({tenant.tenant_id}) granted consent through invitation "
                         f"{invitation.id[:8]}… and is now active{again}, with {level}."
                         f"{contact}", row_key=invitation.notice_key)
        self.invitations.mark_used(invitation, tenant.tenant_id)
        can = named[tenant.access].meaning
        product = "Defender XDR (through Microsoft Graph)" if tenant.source == "graph" \
            else "Defender for Endpoint"
        short = "" if tenant.access == invitation.access else (
            f" The application was granted {named['read'].role} only, not "
            f"{named['triage'].role}, so {self.cfg.mssp_name} cannot update alerts.")
        return Outcome(200, "connected", "You are connected",
                       f"Thank you. {self.cfg.mssp_name} can now {can} in Microsoft "
                       f"{product} for {name}.{short}",
                       "You can close this page. To end the access later, remove the "
                       "application under Microsoft Entra ID › Enterprise applications.",
                       tenant_id=tenant.tenant_id)

    def _probe_graph(self, token: str) -> None:
        """One alerts_v2 call: the Graph permission works (GraphConsentMissing if not)."""
        if self.graph is None:
            return
        with self.graph.alerts(token, top=1) as page:
            for _ in page.documents:
                pass

    def _no_defender(self, error: Exception) -> Outcome:
        return self._refuse(422, "no_defender", "Your organization granted the access, but "
                            "Microsoft Defender for Endpoint is not set up or not licensed in "
                            "it, so there are no alerts to share.",
                            f"Once Defender for Endpoint is active, open your invitation link "
                            f"again, or contact {self.cfg.mssp_name}.", str(error)[:200])
