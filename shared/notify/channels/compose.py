"""The posts a rule's channels get: one ChannelPost per channel, its payload rendered for
the channel's platform, under the ledger key that makes it go once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.messages import AlertEvent, ChannelPost
from shared.notify.channels import slack, teams
from shared.notify.channels.text import AlertFacts, digest_facts, facts
from shared.notify.rules import Rule


def channel_key(key: str, channel: str) -> str:
    """The ledger key of one channel's post of what `key` is (an event id, a digest)."""
    return f"{key}|channel:{channel}"


def alert_posts(rule: Rule, event: AlertEvent, portal: str, mssp_name: str
                ) -> list[ChannelPost]:
    item = facts(event, rule, portal)
    found = []
    for channel in rule.channels:
        payload = (teams.alert_card(item, mssp_name, rule.name) if channel["type"] == "teams"
                   else slack.alert_message(item, mssp_name, rule.name))
        found.append(ChannelPost(rule.scope, rule.id, channel["name"],
                                 channel_key(event.event_id, channel["name"]), payload))
    return found


def digest_posts(rule: Rule, events: list[dict[str, Any]], batch: str, portal: str,
                 mssp_name: str) -> list[ChannelPost]:
    """`events`: the held events of one digest batch (notify/digest.brief)."""
    groups = digest_facts(events, rule, portal)
    found = []
    for channel in rule.channels:
        render = teams.digest_card if channel["type"] == "teams" else slack.digest_message
        found.append(ChannelPost(rule.scope, rule.id, channel["name"],
                                 channel_key(f"digest:{batch}", channel["name"]),
                                 render(groups, len(events), mssp_name, rule.name)))
    return found


def test_payload(kind: str, rule: Rule, mssp_name: str, portal: str) -> dict[str, Any]:
    """A sample alert, as the channel will show real ones (the test email's twin)."""
    item = AlertFacts(severity="Informational", title=f"Test post for rule {rule.name}",
                      tenant="Test tenant", device="test-device", user="", category="General",
                      time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), change="new",
                      hub_url=f"{portal}/" if portal else "", defender_url="")
    if kind == "teams":
        return teams.alert_card(item, mssp_name, rule.name)
    return slack.alert_message(item, mssp_name, rule.name)
