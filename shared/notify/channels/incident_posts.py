"""The Teams and Slack posts of an incident version: one per channel of a rule whose
`incidents` option matched (notify/incidents.py), under the ledger key of the event's id
and the channel, so a version is posted once per (rule, channel) however often its event
comes. Same escaping, limits and buttons as an alert's post (teams.py, slack.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.messages import ChannelPost, IncidentEvent
from shared.notify.channels import slack, teams
from shared.notify.channels.compose import channel_key
from shared.notify.channels.text import SEVERITY_COLOUR, SEVERITY_EMOJI, cut
from shared.notify.incidents import (
    defender_incident_link,
    hub_incident_link,
    incident_severity,
    severity_rose,
)
from shared.notify.render import one_line
from shared.notify.rules import Rule


@dataclass(frozen=True)
class IncidentFacts:
    """An incident as a channel shows it: plain text, not yet escaped for any platform."""

    severity: str  # "High" (the rules' spelling), "UnSpecified" when unknown
    name: str
    tenant: str
    status: str
    assignee: str
    alerts: str  # how many
    time: str
    heading: str  # "New incident", "Incident severity raised: Medium → High"
    hub_url: str  # the incident's page in the MSSP portal ("" when not wanted)
    defender_url: str  # the incident in Defender ("" when not wanted or not https)


def _line(value: object, limit: int) -> str:
    return cut(one_line(value, limit * 4), limit)


def incident_facts(event: IncidentEvent, rule: Rule, portal: str) -> IncidentFacts:
    incident = event.incident
    severity = incident_severity(event) or "UnSpecified"
    heading = "New incident"
    if event.change == "updated" and severity_rose(event):
        before, after = event.changed["severity"][:2]
        heading = f"Incident severity raised: {str(before).capitalize()} → " \
                  f"{str(after).capitalize()}"
    elif event.change == "updated":
        heading = "Updated incident"
    links = rule.include_portal_link
    return IncidentFacts(
        severity=_line(severity, 40), name=_line(incident.get("name") or "(no name)", 1000),
        tenant=_line(event.tenant_name or event.tenant_id, 200)
        if rule.include_org_name else "",
        status=_line(incident.get("status") or "", 100),
        assignee=_line(incident.get("assignee") or "nobody", 200),
        alerts=_line(incident.get("alertCount", ""), 20),
        time=_line(incident.get("lastUpdateDateTime") or event.version, 40),
        heading=heading,
        hub_url=hub_incident_link(portal, event.tenant_id, event.incident_id)
        if links and portal else "",
        defender_url=defender_incident_link(incident) if links else "")


def teams_card(item: IncidentFacts, mssp_name: str, rule_name: str) -> dict[str, Any]:
    body = [
        {"type": "TextBlock", "text": teams.escape(f"{item.severity} · {item.heading}"),
         "color": SEVERITY_COLOUR.get(item.severity, "default"), "weight": "Bolder",
         "size": "Small", "wrap": True},
        {"type": "TextBlock", "text": teams.escape(cut(item.name, 500)), "weight": "Bolder",
         "size": "Medium", "wrap": True},
        {"type": "FactSet", "facts": [
            {"title": title, "value": teams.escape(value) or "—"} for title, value in (
                ("Severity", item.severity), ("Tenant", item.tenant),
                ("Status", item.status), ("Assigned to", item.assignee),
                ("Alerts", item.alerts), ("Time", item.time))]},
        {"type": "TextBlock", "text": teams.escape(f"Rule {rule_name} · {mssp_name}"),
         "isSubtle": True, "size": "Small", "wrap": True}]
    return teams.envelope(body, teams.link_actions(item, mssp_name))


def slack_message(item: IncidentFacts, mssp_name: str, rule_name: str) -> dict[str, Any]:
    emoji = SEVERITY_EMOJI.get(item.severity, "⚪")
    fields = [slack.mrkdwn("Severity", f"{emoji} {item.severity}"),
              slack.mrkdwn("Tenant", item.tenant), slack.mrkdwn("Status", item.status),
              slack.mrkdwn("Assigned to", item.assignee),
              slack.mrkdwn("Alerts", item.alerts), slack.mrkdwn("Time", item.time)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": slack.plain(f"{emoji} Incident: {item.name}",
                                               slack.HEADER_MAX)},
        {"type": "section", "fields": fields},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": cut(slack.escape(
                f"{item.heading} · {item.severity} · rule {rule_name} · {mssp_name}"),
                slack.SECTION_MAX)}]}]
    buttons = slack.link_buttons(item, mssp_name)
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    tenant = f"{slack.escape(item.tenant)}: " if item.tenant else ""
    return {"text": cut(f"{emoji} [{item.severity}] incident {tenant}"
                        f"{slack.escape(item.name)}", slack.SECTION_MAX), "blocks": blocks}


def incident_posts(rule: Rule, event: IncidentEvent, portal: str, mssp_name: str
                   ) -> list[ChannelPost]:
    item = incident_facts(event, rule, portal)
    return [ChannelPost(rule.scope, rule.id, channel["name"],
                        channel_key(event.event_id, channel["name"]),
                        teams_card(item, mssp_name, rule.name) if channel["type"] == "teams"
                        else slack_message(item, mssp_name, rule.name))
            for channel in rule.channels]
