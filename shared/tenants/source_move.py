"""Moving an active tenant from `mde` to `graph` (the MSSP's action).

Why a probe first: consent grants what the app registration declared when the admin
accepted. A tenant that consented before the app asked for the Graph permissions has no
SecurityAlert.Read.All; moved blindly, its next fetch would stop it as consent-revoked.
So a Graph token is taken and one alerts_v2 call made: if both work the tenant moves now,
else the MSSP is told to send a re-consent invitation for `graph` (which moves it once
accepted, shared/tenants/onboarding.py). The cursor is handed over by the worker
(shared/ingest/graph_cursor.py): nothing is lost or fetched twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.microsoft.defender import DefenderError
from shared.microsoft.graph_security import (
    GRAPH_PERMISSIONS,
    GRAPH_SCOPE,
    GraphConsentMissing,
    GraphSecurityClient,
)
from shared.microsoft.identity import TokenError, Tokens
from shared.model import Tenant, TenantStatus
from shared.storage.tenants import TenantRepository
from shared.tenants.access import token_roles
from shared.tenants.admin import Conflict


class NeedsConsent(Conflict):
    """The tenant has not granted the Graph permissions: a re-consent is needed."""


@dataclass(frozen=True)
class Probe:
    ok: bool
    reason: str = ""


class SourceMove:
    def __init__(self, tenants: TenantRepository, tokens_of: Callable[[Tenant], Tokens],
                 graph: GraphSecurityClient) -> None:
        """`tokens_of(tenant)`: the Tokens of the app the tenant consented to."""
        self.tenants, self.tokens_of, self.graph = tenants, tokens_of, graph

    def probe(self, tenant: Tenant) -> Probe:
        """Whether the tenant's app can read its Graph security alerts now."""
        try:
            token = self.tokens_of(tenant).token(tenant.tenant_id, GRAPH_SCOPE)
        except TokenError as exc:
            return Probe(False, f"no Graph token: {exc.reason}")
        roles = {r.casefold() for r in token_roles(token)}
        if roles and GRAPH_PERMISSIONS[0].casefold() not in roles:
            return Probe(False, f"the token carries no {GRAPH_PERMISSIONS[0]}")
        try:
            with self.graph.alerts(token, top=1) as page:
                for _ in page.documents:
                    pass
        except GraphConsentMissing:
            return Probe(False, f"Graph refused: {GRAPH_PERMISSIONS[0]} is not granted")
        except DefenderError as exc:
            raise Conflict(f"Microsoft Graph did not answer the check ({exc}); "
                           "try again") from None
        return Probe(True)

    def to_graph(self, tenant: Tenant) -> Tenant:
        """Move an active tenant to graph (a graph tenant: unchanged). NeedsConsent when
        its consent lacks the Graph permissions; Conflict when it is not active."""
        if tenant.source == "graph":
            return tenant
        if tenant.status != TenantStatus.ACTIVE:
            raise Conflict(f"only an active tenant moves to graph (it is {tenant.status}); "
                           "a re-consent invitation with source graph brings it back on "
                           "graph")
        probe = self.probe(tenant)
        if not probe.ok:
            raise NeedsConsent(f"{probe.reason}: send the tenant a re-consent invitation "
                               'with "source": "graph" (POST /api/tenants/{id}/invitations); '
                               "it moves once accepted")
        self.tenants.move_source(tenant.tenant_id, "graph")
        return self.tenants.get(tenant.tenant_id) or tenant
