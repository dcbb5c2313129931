"""One analyst's (or one API key's) change of a graph tenant's incident, written through
Microsoft Graph (`PATCH /security/incidents/{id}`, `POST .../comments`) and recorded once
in the audit trail, in the alert triage's order and for the same reasons
(service.py): validate (no call if invalid) -> the tenant active with triage access ->
GET the incident and compare its lastUpdateDateTime with the version the caller saw (a
conflict shows the current state; nothing is sent) -> PATCH, then POST the comment ->
the audit entry (the incident's own partition of AuditTrail: `incident_id` set, `alert_id`
"") -> the answer stored at once (ingest/own_incidents.py, which also says why incidents
need no own-change mark).

An attempt is noted before Graph is asked; a retry of the same action id that finds it
noted reads the incident and records it done, without a second call, when Graph shows
the change already.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.microsoft.graph_security import (
    GRAPH_SCOPE,
    GRAPH_WRITE_PERMISSIONS,
    GraphSecurityClient,
)
from shared.microsoft.identity import Tokens
from shared.model import Tenant, TenantStatus
from shared.storage.audit import AuditTrail
from shared.storage.incidents import IncidentRepository
from shared.storage.tenants import TenantRepository
from shared.triage import graph_change, graph_write, incident_change
from shared.triage.model import Actor, AuditEntry, Change
from shared.triage.service import (
    SKEW,
    Applied,
    UnknownTenant,
    kept_copy,
    new_action_id,
    refused_call,
    same_version,
)

NEEDS = GRAPH_WRITE_PERMISSIONS[1]  # SecurityIncident.ReadWrite.All
READ_ONLY = ("the tenant granted read-only access: acting on its incidents through "
             f"Microsoft Graph needs {NEEDS} (re-consent to upgrade)")
NOT_GRAPH = ("the tenant is fetched from Defender for Endpoint's API: the hub keeps no "
             "incidents of it (move it to Microsoft Graph to triage its incidents)")

StoreOwn = Callable[[str, dict[str, Any], Actor], Any]  # (tenant_id, document, actor)


def applied_of(entry: AuditEntry, repeated: bool = False) -> Applied:
    """An incident action's outcome; `alert` holds the incident as Graph has it."""
    return Applied(entry.outcome, dict(entry.extra.get("incident") or {}), entry.detail,
                   entry, entry.extra.get("retry_after"), repeated)


@dataclass
class IncidentTriage:
    tenants: TenantRepository
    incidents: IncidentRepository
    audit: AuditTrail
    tokens: Tokens
    graph: GraphSecurityClient | None
    store_own: StoreOwn = field(default=lambda tenant_id, document, actor: None)
    # the token a write is made with, called with (tenant, GRAPH_SCOPE)
    token_for: Callable[..., str] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def apply(self, actor: Actor, tenant_id: str, incident_id: str, change: Change, *,
              seen_version: str | None = None, action_id: str | None = None) -> Applied:
        """Validate, check the tenant, check the version, write, record. InvalidChange
        before anything; UnknownTenant for a tenant not registered."""
        incident_change.validated(change)
        action_id = action_id or new_action_id()
        recorded = self.audit.recorded(tenant_id, "", action_id, incident_id=incident_id)
        if recorded is not None:
            return applied_of(recorded, repeated=True)
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(tenant_id)
        stored = self.incidents.get(tenant_id, incident_id)
        before = incident_change.stored_fields(
            stored.status, stored.assignee, stored.classification, stored.determination,
            stored.version) if stored else None

        def done(outcome: str, detail: str, incident: dict[str, Any] | None = None,
                 retry_after: int | None = None) -> Applied:
            extra: dict[str, Any] = {"incident": incident_change.compact(incident or {})}
            if retry_after is not None:
                extra["retry_after"] = retry_after
            entry = AuditEntry(
                action_id=action_id, at=self.now(), actor=actor, tenant_id=tenant_id,
                alert_id="", incident_id=incident_id, change=change.body(),
                before=before or {}, outcome=outcome, detail=detail, extra=extra,
                after=incident_change.fields_of(incident)
                if outcome == "done" and incident else {})
            recorded = self.audit.record(entry)
            return applied_of(recorded, repeated=recorded.at != entry.at)

        refusal = self.refusal(tenant)
        if refusal:
            return done("refused", refusal)
        graph = self.graph
        if graph is None:
            return done("failed", "no Graph client is configured for triage")

        def learned(current: dict[str, Any]) -> None:
            nonlocal before
            before = before or incident_change.fields_of(current)

        item = graph_write.GraphItem(
            "incident", f"{tenant_id}/{incident_id}",
            read=lambda token: graph.get_incident(token, incident_id),
            patch=lambda token, body: graph.update_incident(token, incident_id, body),
            comment=lambda token, text: graph.add_incident_comment(token, incident_id, text),
            reflected=incident_change.reflected, version=incident_change.VERSION)
        return graph_write.write(
            item, change, incident_change.patch_body(change),
            token=lambda: self.token_for(tenant, GRAPH_SCOPE) if self.token_for
            else self.tokens.token(tenant_id, GRAPH_SCOPE),
            intend=lambda: self.audit.intend(tenant_id, "", action_id, self.now(),
                                             incident_id=incident_id),
            seen_version=seen_version, known=before is not None, skew=SKEW,
            same_version=same_version, done=done,
            stored=lambda applied, document: self._stored(applied, document, actor),
            refused=lambda exc, half: refused_call(
                exc, tenant_id, done, "Microsoft Graph", self.tenants, self.tokens,
                f"; it needs {NEEDS}", half),
            learned=learned)

    def _stored(self, applied: Applied, document: dict[str, Any], actor: Actor
                ) -> Applied:
        """The hub's copy of the incident as Graph answered, after the audit entry."""
        return kept_copy(applied, document, "an incident", lambda: self.store_own(
            applied.entry.tenant_id, document, actor))

    @staticmethod
    def refusal(tenant: Tenant) -> str:
        """Why the tenant's incidents cannot be changed now ("" when they can)."""
        if tenant.status != TenantStatus.ACTIVE:
            reason = f": {tenant.status_reason}" if tenant.status_reason else ""
            return f"the tenant is {tenant.status}{reason}"
        if tenant.source != graph_change.GRAPH:
            return NOT_GRAPH
        if tenant.access != "triage":
            return tenant.access_reason or READ_ONLY
        return ""
