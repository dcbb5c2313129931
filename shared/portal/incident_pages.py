"""The portal's incidents (graph tenants): the list across tenants, newest update first,
filtered by severity, status and tenant and keyset paged on the IncidentIndex; and an
incident's page with its alerts, each linked to its alert page, its audit entries and the
action forms of incident triage (shared/triage/incident_service.py; the same forms,
CSRF token, version and nonce as the alert page's: triage_forms.py). Every value is
rendered autoescaped (the templates) and every link built from quoted parts."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

from shared.ingest.incident_fetch import parse
from shared.microsoft.defender import DefenderError
from shared.model import parse_tenant_id
from shared.portal import auth, triage_forms
from shared.portal.exchange import Request, Response
from shared.portal.triage_forms import Said, Triage
from shared.storage.incidents import Incident, IncidentRepository, valid_token
from shared.triage import incident_change
from shared.triage.model import InvalidChange

PAGE = 50
SEVERITIES = ("high", "medium", "low", "informational")
STATUSES = ("active", "inProgress", "resolved", "redirected", "awaitingAction")


@dataclass(frozen=True)
class IncidentFilter:
    tenant: str = ""
    severity: str = ""
    status: str = ""
    after: str = ""

    @classmethod
    def parse(cls, params: dict[str, str], tenants: set[str]) -> IncidentFilter:
        """Unknown values are dropped (a bad link shows the unfiltered list)."""
        tenant = params.get("tenant", "")
        after = params.get("after", "")
        return cls(tenant if tenant in tenants else "",
                   params.get("severity", "") if params.get("severity") in SEVERITIES else "",
                   params.get("status", "") if params.get("status") in STATUSES else "",
                   after if valid_token(after) else "")

    def params(self, after: str = "") -> dict[str, str]:
        values = {"tenant": self.tenant, "severity": self.severity, "status": self.status,
                  "after": after}
        return {k: v for k, v in values.items() if v}


class IncidentViews:
    def __init__(self, portal: Any, base: str, incidents: IncidentRepository | None,
                 triage: Triage | None = None, audit: Any = None) -> None:
        """`portal`: the Portal (pages.py), for its guard, pages and tenants; `triage`:
        incident triage (None: the forms are shown disabled); `audit`: the AuditTrail."""
        self.portal, self.base, self.incidents = portal, base, incidents
        self.triage, self.audit = triage, audit

    def incident_action(self, request: Request) -> Response:
        return self.portal._guard(request, self._act)

    def list_page(self, request: Request) -> Response:
        return self.portal._guard(request, self._list)

    def incident_page(self, request: Request) -> Response:
        return self.portal._guard(request, self._incident)

    def _list(self, request: Request, principal: auth.Principal) -> Response:
        if self.incidents is None:
            return self.portal._not_found(principal, "page here")
        tenants = self.portal.admin.tenants.names()
        names = {t.tenant_id: t.display_name for t in tenants}
        flt = IncidentFilter.parse(request.params, set(names))
        found = self.incidents.listed(
            severities=(flt.severity,) if flt.severity else (),
            statuses=(flt.status,) if flt.status else (),
            tenants=(flt.tenant,) if flt.tenant else (), after=flt.after, limit=PAGE)
        rows = [{"item": i, "tenant_name": names.get(i.tenant_id, i.tenant_id),
                 "page": self.link(i.tenant_id, i.incident_id)} for i in found.items]
        next_url = (f"{self.base}/incidents?{urlencode(flt.params(found.after))}"
                    if found.after else "")
        return self.portal._page("portal/incidents.html", principal=principal,
                                 tenants=tenants, flt=flt, rows=rows, next_url=next_url,
                                 first_url=f"{self.base}/incidents?"
                                           f"{urlencode(flt.params())}",
                                 severities=SEVERITIES, statuses=STATUSES)

    def _found(self, request: Request) -> tuple[Any, Incident] | None:
        """The route's tenant and its stored incident, or None."""
        if self.incidents is None:
            return None
        try:
            tenant_id = parse_tenant_id(request.route.get("tenant_id", ""))
        except ValueError:
            return None
        tenant = self.portal.admin.tenants.get(tenant_id)
        incident = self.incidents.get(tenant_id, request.route.get("incident_id", ""))
        if tenant is None or incident is None:
            return None
        return tenant, incident

    def _incident(self, request: Request, principal: auth.Principal, status: int = 200,
                  said: Said | None = None, shown: dict[str, Any] | None = None
                  ) -> Response:
        found = self._found(request)
        if found is None:
            return self.portal._not_found(principal, "incident" if self.incidents
                                          else "page here")
        tenant, incident = found
        tenant_id = tenant.tenant_id
        if shown:  # what Graph answered an action (its current state on a conflict)
            with contextlib.suppress(DefenderError):
                answered = parse(tenant_id, shown)
                # a PATCH answers without the incident's alerts: the stored ones stand
                incident = answered if "alerts" in shown else replace(
                    answered, alert_ids=incident.alert_ids)
        alerts: list[dict[str, Any]] = [
            {"id": a, "page": f"{self.base}/tenants/{quote(tenant_id, safe='')}/alerts/"
                              f"{quote(a, safe='')}"} for a in incident.alert_ids]
        web_url = incident.web_url if incident.web_url.startswith(
            "https://security.microsoft.com/") else ""
        blocked, read_only_tenant = triage_forms.blocked(
            principal, self.portal.cfg, tenant, self.triage is not None, "incidents")
        fields = {"status": "", "classification": "", "determination": ""} | \
            incident_change.stored_fields(
            incident.status, incident.assignee, incident.classification,
            incident.determination, incident.version)
        return self.portal._page(
            "portal/incident.html", status, principal=principal, tenant=tenant,
            incident=incident, alerts=alerts, web_url=web_url, fields=fields,
            path=self.link(tenant_id, incident.incident_id), blocked=blocked,
            read_only_tenant=read_only_tenant, nonce=triage_forms.nonce(),
            verdicts=triage_forms.verdict_groups(), statuses=incident_change.STATUSES,
            said=said, audit_on=self.audit is not None,
            audit=list(self.audit.for_incident(tenant_id, incident.incident_id))
            if self.audit is not None else [])

    def _act(self, request: Request, principal: auth.Principal) -> Response:
        portal = self.portal
        action = request.route.get("action", "")
        found = self._found(request)
        if found is None or action not in triage_forms.ACTIONS:
            return portal._not_found(principal, "incident or action")
        if not principal.may_act(portal.cfg):
            return portal._page("portal/denied.html", 403, principal=principal,
                                signed_in=True, reason=auth.READ_ONLY_ANALYST)
        if self.triage is None:
            return self._incident(request, principal, 503, Said(
                503, "bad", "Acting on incidents is not available in this deployment."))
        tenant, incident = found
        try:
            change, seen, action_id = triage_forms.submitted(
                action, request.form, principal, incident_change.STATUSES, "incident-")
        except InvalidChange as exc:
            return self._incident(request, principal, 400, Said(
                400, "bad", f"Not sent ({exc.field}): {exc.message}"))
        applied = self.triage.apply(triage_forms.actor(principal), tenant.tenant_id,
                                    incident.incident_id, change, seen_version=seen,
                                    action_id=action_id)
        retry = getattr(applied, "retry_after", None) or ""
        told = triage_forms.said(applied.outcome, applied.detail, str(retry))
        if applied.outcome == "conflict":
            told = Said(409, "warn", "Not changed: the incident was changed in Microsoft "
                                     "Defender since you opened it. Below is its new "
                                     "state; nothing was overwritten. Check it, then act "
                                     "again if still needed.")
        elif applied.outcome == "done":
            told = Said(200, "ok", "Done: Microsoft Defender has the change; below is the "
                                   "incident as Microsoft Graph answered.")
        return self._incident(request, principal, told.status, told,
                              shown=applied.alert if isinstance(applied.alert, dict)
                              else None)

    def link(self, tenant_id: str, incident_id: str) -> str:
        return (f"{self.base}/incidents/{quote(tenant_id, safe='')}/"
                f"{quote(incident_id, safe='')}")
