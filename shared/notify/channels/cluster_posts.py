"""The Teams and Slack posts of a cluster version (an indicator seen at several customers):
one per channel of an MSSP-wide rule whose `clusters` option matched (notify/clusters.py),
under the ledger key of the event's id and the channel, so a version is posted once per
(rule, channel) however often its event comes. The indicator is attacker text: escaped
as an alert's title is (teams.py, slack.py), and never a link."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.messages import ChannelPost, ClusterEvent
from shared.notify.channels import slack, teams
from shared.notify.channels.compose import channel_key
from shared.notify.channels.text import SEVERITY_COLOUR, SEVERITY_EMOJI, cut
from shared.notify.clusters import KIND_LABELS, cluster_link
from shared.notify.render import one_line
from shared.notify.rules import Rule

MAX_LISTED = 25  # customers named in a post; the rest counted ("…and 7 more")
MAX_LINK = 3000  # Slack's limit on a button's URL


@dataclass(frozen=True)
class ClusterFacts:
    """A cluster version as a channel shows it: plain text, not yet escaped."""

    severity: str  # the highest of its alerts ("High"), "UnSpecified" when unknown
    kind: str  # "SHA256", "URL"...
    indicator: str
    heading: str  # "Seen at 4 customers", "Seen at 5 customers · joined: Echo"
    reach: str
    alerts: str
    first_seen: str
    last_seen: str
    customers: list[str]  # "Name: 3 alerts" (the id without names), at most MAX_LISTED
    more: int  # customers not listed
    hub_url: str  # the cluster's page in the MSSP portal ("" when not wanted)
    defender_url: str = ""  # a cluster has no Defender page


def _line(value: object, limit: int) -> str:
    return cut(one_line(value, limit * 4), limit)


def _who(tenant: dict[str, Any], names: bool) -> str:
    return _line((tenant.get("name") if names else "") or tenant.get("id") or "?", 200)


def cluster_facts(event: ClusterEvent, rule: Rule, portal: str) -> ClusterFacts:
    names = rule.include_org_name
    reach = len(event.tenants)
    heading = f"Seen at {reach} customers"
    if event.change == "grew" and event.joined:
        heading += " · joined: " + ", ".join(_who(t, names) for t in event.joined[:5])
        if len(event.joined) > 5:
            heading += f" and {len(event.joined) - 5} more"
    customers = []
    for tenant in event.tenants[:MAX_LISTED]:
        count = tenant.get("alerts")
        customers.append(_who(tenant, names) + (
            f": {count} alert{'s' if count != 1 else ''}" if isinstance(count, int) else ""))
    return ClusterFacts(
        severity=_line(event.highest_severity or "UnSpecified", 40),
        kind=KIND_LABELS.get(event.indicator_kind, _line(event.indicator_kind, 40)),
        indicator=_line(event.indicator, 600), heading=_line(heading, 600),
        reach=str(reach), alerts=str(event.alert_count),
        first_seen=_line(event.first_seen, 40), last_seen=_line(event.last_seen, 40),
        customers=customers, more=max(0, reach - MAX_LISTED),
        hub_url=_hub_url(portal, event) if rule.include_portal_link and portal else "")


def _hub_url(portal: str, event: ClusterEvent) -> str:
    """The cluster's page; the clusters list when that link is longer than a button's URL
    may be (Slack cuts at 3,000: a cut link would open another indicator's page)."""
    link = cluster_link(portal, event.indicator_kind, event.indicator)
    return link if len(link) <= MAX_LINK else f"{portal}/clusters"


def _customers_text(item: ClusterFacts) -> str:
    more = f"\n…and {item.more} more customers" if item.more else ""
    return "\n".join(f"- {c}" for c in item.customers) + more


def teams_card(item: ClusterFacts, mssp_name: str, rule_name: str) -> dict[str, Any]:
    lines = [{"type": "TextBlock", "text": teams.escape(c), "wrap": True, "spacing": "None"}
             for c in item.customers]
    if item.more:
        lines.append({"type": "TextBlock", "text": f"…and {item.more} more customers",
                      "isSubtle": True, "wrap": True, "spacing": "None"})
    body = [
        {"type": "TextBlock", "text": teams.escape(f"{item.severity} · {item.heading}"),
         "color": SEVERITY_COLOUR.get(item.severity, "default"), "weight": "Bolder",
         "size": "Small", "wrap": True},
        {"type": "TextBlock", "text": teams.escape(f"{item.kind}: {item.indicator}"),
         "weight": "Bolder", "size": "Medium", "wrap": True},
        {"type": "FactSet", "facts": [
            {"title": title, "value": teams.escape(value) or "—"} for title, value in (
                ("Customers", item.reach), ("Alerts", item.alerts),
                ("First seen", item.first_seen), ("Last seen", item.last_seen))]},
        {"type": "TextBlock", "text": "Customers", "weight": "Bolder", "wrap": True},
        *lines,
        {"type": "TextBlock", "text": teams.escape(f"Rule {rule_name} · {mssp_name}"),
         "isSubtle": True, "size": "Small", "wrap": True}]
    return teams.envelope(body, teams.link_actions(item, mssp_name))


def slack_message(item: ClusterFacts, mssp_name: str, rule_name: str) -> dict[str, Any]:
    emoji = SEVERITY_EMOJI.get(item.severity, "⚪")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": slack.plain(f"{emoji} {item.heading}", slack.HEADER_MAX)},
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(
            f"*{item.kind}*\n{slack.escape(item.indicator)}", slack.SECTION_MAX)}},
        {"type": "section", "fields": [
            slack.mrkdwn("Customers", item.reach), slack.mrkdwn("Alerts", item.alerts),
            slack.mrkdwn("First seen", item.first_seen),
            slack.mrkdwn("Last seen", item.last_seen)]},
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(
            slack.escape(_customers_text(item)), slack.SECTION_MAX)}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": cut(slack.escape(
                f"{item.severity} · rule {rule_name} · {mssp_name}"), slack.SECTION_MAX)}]}]
    buttons = slack.link_buttons(item, mssp_name)
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": cut(f"{emoji} [{item.severity}] {slack.escape(item.heading)}: "
                        f"{item.kind} {slack.escape(item.indicator)}", slack.SECTION_MAX),
            "blocks": blocks}


def cluster_posts(rule: Rule, event: ClusterEvent, portal: str, mssp_name: str
                  ) -> list[ChannelPost]:
    item = cluster_facts(event, rule, portal)
    return [ChannelPost(rule.scope, rule.id, channel["name"],
                        channel_key(event.event_id, channel["name"]),
                        teams_card(item, mssp_name, rule.name) if channel["type"] == "teams"
                        else slack_message(item, mssp_name, rule.name))
            for channel in rule.channels]
