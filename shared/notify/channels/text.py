"""What a channel message says about an alert, as plain text: the facts picked from the
event (the same for Teams and Slack), one line each, cut where the platform needs it with
a visible "…(cut)" so nobody takes a shortened title for the whole one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.messages import AlertEvent
from shared.notify.incidents import hub_incident_link
from shared.notify.render import hub_link, one_line, portal_link
from shared.notify.rules import Rule

CUT = "…(cut)"
SEVERITY_COLOUR = {"High": "attention", "Medium": "warning", "Low": "accent",
                   "Informational": "default"}
SEVERITY_EMOJI = {"High": "🔴", "Medium": "🟠", "Low": "🟡", "Informational": "🔵"}
SEVERITY_ORDER = ("High", "Medium", "Low", "Informational", "UnSpecified")


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters; if shortened, ending in CUT (which says so)."""
    return text if len(text) <= limit else text[:max(0, limit - len(CUT))] + CUT


def _line(value: object, limit: int) -> str:
    """One line (no control characters), cut with CUT past `limit`."""
    return cut(one_line(value, limit * 4), limit)


class Linked(Protocol):
    """What a post's buttons link to (an alert's or an incident's facts)."""

    @property
    def hub_url(self) -> str: ...
    @property
    def defender_url(self) -> str: ...


@dataclass(frozen=True)
class AlertFacts:
    """An alert as a channel shows it: plain text, not yet escaped for any platform."""

    severity: str
    title: str
    tenant: str
    device: str
    user: str
    category: str
    time: str
    change: str  # "new" | "updated"
    hub_url: str  # the alert's page in the MSSP portal ("" when unknown)
    defender_url: str  # the alert in the customer's Defender portal ("" when not wanted)


def _user(alert: dict[str, Any]) -> str:
    for item in alert.get("evidence") or []:
        if isinstance(item, dict) and item.get("accountName"):
            domain = item.get("domainName")
            return f"{domain}\\{item['accountName']}" if domain else str(item["accountName"])
    return str(alert.get("assignedTo") or "")


def facts(event: AlertEvent, rule: Rule, portal: str) -> AlertFacts:
    """`portal`: the MSSP portal's base URL (…/api/portal), for the alert page's button."""
    alert = event.alert
    alert_id = str(alert.get("id", event.alert_id))
    severity = str(alert.get("severity") or "UnSpecified")
    device = str(alert.get("computerDnsName") or "") if rule.include_device else ""
    return AlertFacts(
        severity=_line(severity, 40), title=_line(alert.get("title") or "(no title)", 1000),
        tenant=_line(event.tenant_name or event.tenant_id, 200)
        if rule.include_org_name else "", device=_line(device, 200),
        user=_line(_user(alert), 200), category=_line(alert.get("category") or "", 100),
        time=_line(alert.get("lastUpdateTime") or alert.get("alertCreationTime") or "", 40),
        change=event.change,
        hub_url=hub_link(portal, alert_id, event.tenant_id)
        if portal and rule.include_portal_link else "",
        defender_url=portal_link(alert_id, event.tenant_id) if rule.include_portal_link
        else "")


def digest_facts(rows: list[dict[str, Any]], rule: Rule, portal: str
                 ) -> list[tuple[str, list[tuple[str, list[AlertFacts]]]]]:
    """Held digest events (digest.brief, incidents.incident_brief) grouped:
    [(tenant name, [(severity, alerts and incidents)])]."""
    grouped: dict[str, dict[str, list[AlertFacts]]] = {}
    names: dict[str, str] = {}
    for row in rows:
        tenant = str(row.get("tenant", ""))
        names[tenant] = _line(row.get("tenant_name") or tenant, 200)
        event = AlertEvent(tenant_id=tenant, tenant_name=names[tenant],
                           alert_id=str(row.get("alert", {}).get("id", "")), version="",
                           change=str(row.get("change") or "new"), changed={},
                           alert=dict(row.get("alert") or {}), event_id="-")
        item = facts(event, rule, portal)
        if row.get("type") == "incident":  # notify/incidents.incident_brief
            links = rule.include_portal_link
            item = replace(item, hub_url=hub_incident_link(
                portal, tenant, event.alert_id) if links and portal else "",
                defender_url=str(row.get("webUrl") or "") if links else "")
        grouped.setdefault(tenant, {}).setdefault(item.severity if item.severity in
                                                  SEVERITY_ORDER else "UnSpecified",
                                                  []).append(item)
    return [(names[t], [(s, grouped[t][s]) for s in SEVERITY_ORDER if s in grouped[t]])
            for t in sorted(grouped, key=lambda t: names[t].lower())]
