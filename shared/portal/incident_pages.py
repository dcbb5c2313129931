"""The portal's incidents (graph tenants): the list across tenants, newest update first,
filtered by severity, status and tenant and keyset paged on the IncidentIndex; and an
incident's page with its alerts, each linked to its alert page. Every value is rendered
autoescaped (the templates) and every link built from quoted parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from shared.model import parse_tenant_id
from shared.portal import auth
from shared.portal.exchange import Request, Response
from shared.storage.incidents import IncidentRepository, valid_token

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
    def __init__(self, portal: Any, base: str, incidents: IncidentRepository | None
                 ) -> None:
        """`portal`: the Portal (pages.py), for its guard, pages and tenants."""
        self.portal, self.base, self.incidents = portal, base, incidents

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

    def _incident(self, request: Request, principal: auth.Principal) -> Response:
        if self.incidents is None:
            return self.portal._not_found(principal, "page here")
        try:
            tenant_id = parse_tenant_id(request.route.get("tenant_id", ""))
        except ValueError:
            return self.portal._not_found(principal, "incident")
        tenant = self.portal.admin.tenants.get(tenant_id)
        incident = self.incidents.get(tenant_id, request.route.get("incident_id", ""))
        if tenant is None or incident is None:
            return self.portal._not_found(principal, "incident")
        alerts: list[dict[str, Any]] = [
            {"id": a, "page": f"{self.base}/tenants/{quote(tenant_id, safe='')}/alerts/"
                              f"{quote(a, safe='')}"} for a in incident.alert_ids]
        web_url = incident.web_url if incident.web_url.startswith(
            "https://security.microsoft.com/") else ""
        return self.portal._page("portal/incident.html", principal=principal, tenant=tenant,
                                 incident=incident, alerts=alerts, web_url=web_url)

    def link(self, tenant_id: str, incident_id: str) -> str:
        return (f"{self.base}/incidents/{quote(tenant_id, safe='')}/"
                f"{quote(incident_id, safe='')}")
