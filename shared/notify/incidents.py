"""Incident emails: a rule with `incidents` set fires on a graph tenant's new incident
("new") or also on one whose severity rose ("new_or_severity_rise"); one email per
incident version, claimed in the notify ledger under the event's id as alert emails are
(or held for the rule's digest, as an alert is: `incident_brief`). Its Teams and Slack
posts: notify/channels/incident_posts.py."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from shared.messages import IncidentEvent
from shared.notify.digest import BRIEF_CHARS
from shared.notify.render import (
    HTML_TEMPLATES,
    TEXT_TEMPLATES,
    envelope,
    fix_boundary,
    one_line,
)
from shared.notify.rules import SEVERITIES, Rule

INCIDENT_OPTIONS = ("off", "new", "new_or_severity_rise")
GRAPH_SEVERITIES = ("informational", "low", "medium", "high")


def severity_rose(event: IncidentEvent) -> bool:
    """The update raised the incident's severity (unknown severities never rise)."""
    before, after = (event.changed.get("severity") or [None, None])[:2]
    return (before in GRAPH_SEVERITIES and after in GRAPH_SEVERITIES
            and GRAPH_SEVERITIES.index(after) > GRAPH_SEVERITIES.index(before))


def incident_severity(event: IncidentEvent) -> str:
    """As the rule's severities spell them ("high" -> "High")."""
    return str(event.incident.get("severity") or "").capitalize()


def defender_incident_link(incident: dict[str, Any]) -> str:
    """The incident's page in Defender (its `webUrl`), if it is an https URL."""
    link = str(incident.get("webUrl") or "")
    return link if link.startswith("https://") else ""


def incident_brief(event: IncidentEvent) -> dict[str, Any]:
    """What a digest holds and shows of an incident version: an alert's brief
    (notify/digest.brief), its title "Incident: <name>", with `type` and the incident's
    Defender link, so the digest email and cards list it among the alerts."""
    incident = event.incident
    severity = incident_severity(event)
    link = defender_incident_link(incident)
    return {"tenant": event.tenant_id, "tenant_name": _short(event.tenant_name),
            "change": event.change, "type": "incident",
            "webUrl": link if len(link) <= BRIEF_CHARS else "",  # never a cut link
            "alert": {"id": _short(event.incident_id),
                      "title": _short(f"Incident: {incident.get('name') or ''}"),
                      "severity": severity if severity in SEVERITIES else "UnSpecified",
                      "status": _short(incident.get("status")), "category": "Incident",
                      "computerDnsName": "", "rbacGroupName": "",
                      "alertCreationTime": _short(incident.get("createdDateTime")),
                      "lastUpdateTime": _short(event.version)}}


def _short(value: Any) -> Any:
    return value[:BRIEF_CHARS] if isinstance(value, str) else value


def incident_matches(rule: Rule, event: IncidentEvent) -> bool:
    option = rule.incidents
    if not rule.enabled or option == "off":
        return False
    if event.change == "updated" and not (option == "new_or_severity_rise"
                                          and severity_rose(event)):
        return False
    severity = incident_severity(event)
    if rule.severities and severity not in rule.severities:
        return False
    return not (rule.min_severity and (severity not in SEVERITIES or SEVERITIES.index(
        severity) < SEVERITIES.index(rule.min_severity)))


def hub_incident_link(portal: str, tenant_id: str, incident_id: str) -> str:
    return (f"{portal}/incidents/{quote(tenant_id, safe='')}/"
            f"{quote(incident_id, safe='')}")


def render_incident(event: IncidentEvent, rule: Rule, recipients: list[str], sender: str,
                    reply_to: str, mssp_name: str, date: datetime, msgid: str,
                    portal: str = "") -> EmailMessage:
    """The email (text and autoescaped HTML) of one incident version."""
    incident: dict[str, Any] = event.incident
    org = event.tenant_name if rule.include_org_name else ""
    link = defender_incident_link(incident) if rule.include_portal_link else ""
    hub = hub_incident_link(portal, event.tenant_id, event.incident_id) \
        if rule.include_portal_link and portal else ""
    rose = event.change == "updated" and severity_rose(event)
    context = {"event": event, "incident": incident, "rule": rule, "org": org,
               "link": link, "hub": hub, "mssp_name": mssp_name, "rose": rose,
               "severity": incident_severity(event) or "Incident"}
    prefix = f"[{context['severity']}] incident"
    if org:
        prefix += f" {org}:"
    if rose:
        prefix += " severity raised:"
    message = EmailMessage()
    envelope(message, f"{prefix} {incident.get('name', '')}", sender, recipients,
             reply_to, date, msgid)
    message["X-MSSP-Hub-Event"] = one_line(event.event_id, 300)
    message.set_content(TEXT_TEMPLATES.get_template("incident.txt").render(**context))
    message.add_alternative(HTML_TEMPLATES.get_template("incident.html").render(**context),
                            subtype="html")
    fix_boundary(message)
    return message
