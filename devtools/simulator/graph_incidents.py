"""Microsoft Graph security incidents: what the service keeps of one (`make`), and what
`/security/incidents` serves (`view`): severity, status and lastUpdateDateTime follow
the incident's alerts, as Defender XDR correlates them. Pure functions."""

from __future__ import annotations

from typing import Any

from devtools.simulator.graph_alerts import (
    CLASSIFICATIONS,
    DETERMINATIONS,
    SEVERITIES,
    highest,
    incident_url,
)
from devtools.simulator.odata import Schema

STATUSES = ("active", "resolved", "inProgress", "redirected", "unknownFutureValue",
            "awaitingAction")
# what List incidents documents for $filter
INCIDENT_SCHEMA = Schema(
    "microsoft.graph.security.incident", ("createdDateTime", "lastUpdateDateTime"),
    {"status": STATUSES, "severity": SEVERITIES, "classification": CLASSIFICATIONS,
     "determination": DETERMINATIONS}, ("assignedTo",))
TIME_FIELDS = ("createdDateTime", "lastUpdateDateTime")


def make(incident_id: str, tenant_id: str, alerts: list[dict[str, Any]], now: str
         ) -> dict[str, Any]:
    """A new incident correlating `alerts` (v2 dicts), named as Defender XDR names them."""
    categories = list(dict.fromkeys(a.get("category") or "Unknown" for a in alerts))
    products = {a.get("serviceSource") for a in alerts}
    if len(alerts) == 1:
        name = f"{alerts[0].get('title')} involving one user"
    else:
        name = (f"Multi-stage incident involving {' & '.join(categories[:3])} on "
                f"{len(products)} products")
    return {
        "id": incident_id, "tenantId": tenant_id, "displayName": name,
        "description": None, "summary": None,
        "incidentWebUrl": incident_url(incident_id, tenant_id),
        "redirectIncidentId": None, "status": "active",
        "severity": highest([a.get("severity") or "unknown" for a in alerts]),
        "assignedTo": None, "classification": "unknown", "determination": "unknown",
        "customTags": [], "systemTags": ["Multi-product"] if len(products) > 1 else [],
        "comments": [], "lastModifiedBy": "Microsoft 365 Defender-AlertCorrelation",
        "resolvingComment": None, "createdDateTime": now, "lastUpdateDateTime": now,
    }


def view(incident: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """The incident as served: its own fields, with severity the highest of its alerts',
    `resolved` once every alert is (unless redirected), and lastUpdateDateTime the latest
    of its own and its alerts'. Times compare as text: both are UTC with 'Z'."""
    served = dict(incident)
    if alerts:
        served["severity"] = highest([incident.get("severity"),
                                      *(a.get("severity") for a in alerts)])
        if incident.get("status") != "redirected" and all(
                a.get("status") == "resolved" for a in alerts):
            served["status"] = "resolved"
        times = [t for t in (incident.get("lastUpdateDateTime"),
                             *(a.get("lastUpdateDateTime") for a in alerts))
                 if isinstance(t, str)]
        served["lastUpdateDateTime"] = max(times, key=_sortable, default=None)
    return served


def _sortable(text: str) -> str:
    """ISO times of different fraction lengths ordered right: pad the fraction."""
    if not text.endswith("Z"):
        return text
    whole, _, frac = text[:-1].partition(".")
    return f"{whole}.{frac.ljust(7, '0')}"


def progress(incident: dict[str, Any], now: str, who: str) -> dict[str, Any]:
    """The next analyst step on the incident itself: active -> inProgress (assigned)."""
    changed = dict(incident)
    if incident.get("status") == "active":
        changed.update(status="inProgress", assignedTo=who)
    changed["lastUpdateDateTime"] = now
    return changed
