"""A tenant's source on the fakes: invitations carry `source` (DEFAULT_ALERT_SOURCE when
none is named), a graph invitation is verified with a Graph token and one alerts_v2 call
and registers a graph tenant, a re-consent for graph moves an active mde tenant, and the
MSSP's move-to-graph probes before it moves (else: re-consent needed)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from shared.microsoft.defender import DefenderError
from shared.microsoft.graph_security import GRAPH_SCOPE, GraphConsentMissing, Page
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.storage.memory.tenants import MemoryTenants
from shared.tenants.admin import Conflict
from shared.tenants.invitations import parse_invitation, parse_reconsent
from shared.tenants.onboarding import Onboarding
from shared.tenants.source_move import NeedsConsent, SourceMove
from tests.helpers import settings
from tests.unit.test_onboarding_service import World, _jwt


class ScopedTokens:
    """Tokens that remember the scope asked; `roles` go into the Graph token."""

    def __init__(self, roles: list[str] | None = None) -> None:
        self.scopes: list[str | None] = []
        self.roles = roles if roles is not None else ["SecurityAlert.Read.All"]
        self.refused: TokenError | None = None

    def token(self, tenant: str, scope: str | None = None) -> str:
        self.scopes.append(scope)
        if self.refused is not None:
            raise self.refused
        return _jwt({"tid": tenant, "roles": self.roles if scope == GRAPH_SCOPE else []})

    def forget(self, tenant: str) -> None:
        pass


class ProbedGraph:
    def __init__(self) -> None:
        self.calls = 0
        self.error: Exception | None = None

    @contextlib.contextmanager
    def alerts(self, token: str, *, since: str | None = None, top: int = 1000,
               link: str = "") -> Iterator[Page]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        yield Page(iter(()))


class GraphWorld(World):
    def __init__(self, monkeypatch, **env: str) -> None:
        super().__init__(monkeypatch)
        self.tokens, self.graph = ScopedTokens(), ProbedGraph()
        self.service = Onboarding(
            settings(MSSP_NAME="Acme MSSP", **env), self.tokens,  # type: ignore[arg-type]
            self.defender, self.tenants, self.invitations, self.states, self.notices,
            self.sign_in, graph=self.graph)  # type: ignore[arg-type]


def _new() -> str:
    return str(uuid.uuid4())


def test_an_invitation_takes_the_default_source_unless_it_names_one(monkeypatch):
    world = GraphWorld(monkeypatch, DEFAULT_ALERT_SOURCE="graph")
    assert world.invite(**parse_invitation({
        "display_name": "N", "contact_email": "it@n.example"})).source == "graph"
    assert world.invite(source="mde").source == "mde"
    assert GraphWorld(monkeypatch).invite().source == "mde"  # the setting's default
    stored = world.invitations.get(world.invite(source="graph").id)
    assert stored.source == "graph"


def test_a_graph_invitation_registers_a_graph_tenant_checked_on_graph(monkeypatch):
    world = GraphWorld(monkeypatch)
    tenant_id = _new()
    _, outcome = world.onboard(tenant_id, world.invite(source="graph"))
    assert (outcome.status, outcome.kind) == (200, "connected")
    assert "Defender XDR" in outcome.message
    tenant = world.tenants.get(tenant_id)
    assert (tenant.source, tenant.access, tenant.consent_app) == ("graph", "read", "read")
    assert world.tokens.scopes[-1] == GRAPH_SCOPE
    assert (world.graph.calls, world.defender.calls) == (1, 0)


def test_a_graph_invitation_without_the_graph_permission_registers_nothing(monkeypatch):
    world = GraphWorld(monkeypatch)
    world.graph.error = GraphConsentMissing("Missing role", 403, "Forbidden", False)
    tenant_id = _new()
    invitation, outcome = world.onboard(tenant_id, world.invite(source="graph"))
    assert (outcome.status, outcome.kind) == (400, "not_verified")
    assert "SecurityAlert.Read.All" in outcome.message
    assert world.tenants.get(tenant_id) is None
    assert world.invitations.get(invitation.id).status == "open"


def test_a_graph_token_refused_for_missing_consent_says_so(monkeypatch):
    world = GraphWorld(monkeypatch)
    world.tokens.refused = TokenError("AADSTS65001", 65001, TenantStatus.CONSENT_REVOKED,
                                      "consent_missing")
    _, outcome = world.onboard(_new(), world.invite(source="graph"))
    assert (outcome.kind, outcome.detail) == ("not_verified", "graph_consent_missing")


def test_a_reconsent_for_graph_moves_an_active_mde_tenant(monkeypatch):
    world = GraphWorld(monkeypatch)
    tenant_id = _new()
    world.onboard(tenant_id, world.invite())
    tenant = world.tenants.get(tenant_id)
    assert tenant.source == "mde"
    with pytest.raises(ValueError):  # nothing to change
        world.service.create_reconsent(tenant, parse_reconsent(None) | {
            "contact_email": "it@n.example"})
    invitation = world.service.create_reconsent(tenant, parse_reconsent(
        {"source": "graph"}) | {"contact_email": "it@n.example"})
    assert invitation.source == "graph"
    _, outcome = world.onboard(tenant_id, invitation)
    assert outcome.kind == "connected"
    assert world.tenants.get(tenant_id).source == "graph"
    with pytest.raises(ValueError):  # and not back
        world.service.create_reconsent(world.tenants.get(tenant_id), parse_reconsent(
            {"source": "mde"}) | {"contact_email": "it@n.example"})


def test_the_consent_page_names_the_graph_permissions(monkeypatch):
    from shared.web.pages import render
    world = GraphWorld(monkeypatch)
    invitation = world.invite(source="graph")
    permission, client_id = world.service.terms(invitation)
    html = render("invitation.html", invitation=invitation, permission=permission,
                  client_id=client_id, action="/x", mssp_name="Acme")
    assert "SecurityAlert.Read.All" in html and "SecurityIncident.Read.All" in html
    assert "Microsoft Graph" in html and "Alert.Read.All</code> on the" not in html
    mde = world.invite()
    permission, client_id = world.service.terms(mde)
    html = render("invitation.html", invitation=mde, permission=permission,
                  client_id=client_id, action="/x", mssp_name="Acme")
    assert "SecurityAlert.Read.All" not in html and "Alert.Read.All" in html


# the MSSP's move -----------------------------------------------------------------------
def _mover(roles: list[str] | None = None) -> tuple[SourceMove, MemoryTenants, Tenant,
                                                    ProbedGraph]:
    tenants, graph = MemoryTenants(), ProbedGraph()
    tenant = tenants.add(Tenant(_new(), "Contoso"))
    tokens = ScopedTokens(roles)
    return SourceMove(tenants, lambda t: tokens, graph), tenants, tenant, graph  # type: ignore[arg-type,return-value]


def test_a_tenant_whose_app_has_the_graph_permission_moves_at_once():
    mover, tenants, tenant, graph = _mover()
    moved = mover.to_graph(tenant)
    assert moved.source == "graph" and tenants.get(tenant.tenant_id).source == "graph"
    assert graph.calls == 1
    assert mover.to_graph(moved).source == "graph" and graph.calls == 1  # idempotent


@pytest.mark.parametrize("roles,error", [
    (["Alert.Read.All"], None),  # a token without the Graph role
    (["SecurityAlert.Read.All"], GraphConsentMissing("no", 403, "Forbidden", False)),
])
def test_a_tenant_without_the_graph_permission_needs_a_reconsent(roles, error):
    mover, tenants, tenant, graph = _mover(roles)
    graph.error = error
    with pytest.raises(NeedsConsent, match="re-consent"):
        mover.to_graph(tenant)
    assert tenants.get(tenant.tenant_id).source == "mde"


def test_graph_not_answering_or_a_tenant_not_active_moves_nothing():
    mover, tenants, tenant, graph = _mover()
    graph.error = DefenderError("Graph API unreachable")
    with pytest.raises(Conflict):
        mover.to_graph(tenant)
    tenants.pause(tenant.tenant_id, "by the MSSP")
    graph.error = None
    with pytest.raises(Conflict, match="active"):
        mover.to_graph(tenants.get(tenant.tenant_id))
    assert tenants.get(tenant.tenant_id).source == "mde"
