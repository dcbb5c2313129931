"""Incident rules on Teams, Slack and digests, on the in-memory repositories: one post per
(rule, channel, incident version) whatever the redeliveries, each a card or Block Kit
message the platform takes (devtools/webhook_schemas), hostile names inert; a digest rule
(or one over its hourly cap) holds the incident for its digest, which lists it with the
alerts and links it to its incident pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devtools.webhook_schemas import slack_problems, teams_problems
from shared.messages import IncidentEvent
from shared.notify.channels.incident_posts import incident_facts, slack_message, teams_card
from shared.notify.rules import parse_rule
from tests.unit.test_channel_delivery import SLACK_URL, TEAMS_URL, TENANT, World, _event

HOSTILE = ("<!channel> <@U024BE7LH> <at>Everyone</at> @here *bold* [x](https://evil.example)"
           " <script>alert(1)</script> &amp;")
WEB = "https://security.microsoft.com/incidents/1042?tid=" + TENANT


def _incident(version: str = "2026-12-03T07:00:00.0000000Z", severity: str = "high",
              change: str = "new", before: str = "", name: str = "Multi-stage incident"
              ) -> IncidentEvent:
    return IncidentEvent(TENANT, "Northwind", "1042", version, change,
                         {"severity": [before, severity]} if before else {},
                         {"name": name, "severity": severity, "status": "active",
                          "assignee": "", "alertIds": ["ga1", "ga2"], "alertCount": 2,
                          "tags": [], "createdDateTime": "2026-12-03T06:00:00Z",
                          "lastUpdateDateTime": version, "webUrl": WEB})


@pytest.fixture
def world() -> World:
    return World()


def _teams_ok(card: dict) -> bool:
    return teams_problems(card, len(json.dumps(card).encode())) == []


def _slack_ok(message: dict) -> bool:
    return slack_problems(message) == ("", [])


def _texts(card: dict) -> list[str]:
    return [b.get("text", "") for b in card["attachments"][0]["content"]["body"]]


def test_one_post_per_channel_per_incident_version_whatever_the_redeliveries(world):
    world.rule(incidents="new_or_severity_rise")
    event = _incident()
    for _ in range(3):
        world.notifier.handle(event)
    assert sorted(world.work()) == ["duplicate"] * 4 + ["sent", "sent"]
    assert len(world.transport.sent) == 1  # and one email
    [card], [message] = world.poster.to(TEAMS_URL), world.poster.to(SLACK_URL)
    assert _teams_ok(card) and _slack_ok(message)
    assert _texts(card)[:2] == ["High · New incident", "Multi-stage incident"]
    assert message["blocks"][0]["text"]["text"] == "🔴 Incident: Multi-stage incident"
    urls = [a["url"] for a in card["attachments"][0]["content"]["actions"]]
    assert urls == [f"{world.notifier.portal}/incidents/{TENANT}/1042", WEB]
    rose = _incident("2026-12-03T08:00:00.0000000Z", "high", "updated", before="medium")
    world.notifier.handle(rose)
    world.notifier.handle(rose)
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    assert _texts(world.poster.to(TEAMS_URL)[1])[0] == (
        "High · Incident severity raised: Medium → High")
    world.notifier.handle(_incident("2026-12-03T09:00:00.0000000Z", "low", "updated",
                                    before="high"))  # lowered: nothing
    assert world.work() == []


def test_a_rule_without_the_incident_option_posts_nothing_and_a_channel_only_rule_no_email(
        world):
    world.rule()  # alerts only
    world.notifier.handle(_incident())
    assert world.work() == []
    world.rule(recipients=[], incidents="new")
    world.notifier.handle(_incident())
    assert world.work() == ["sent", "sent"] and world.transport.sent == []


def test_hostile_incident_text_is_inert_and_valid_on_both_platforms(world):
    rule = parse_rule({"name": HOSTILE, "recipients": ["soc@mssp.example"],
                       "incidents": "new"}, TENANT)
    item = incident_facts(_incident(name=HOSTILE * 50), rule, "https://hub.example/api/portal")
    card = teams_card(item, "Contoso MSSP", rule.name)
    message = slack_message(item, "Contoso MSSP", rule.name)
    assert _teams_ok(card) and _slack_ok(message)
    teams_text, slack_text = json.dumps(card), json.dumps(message)
    for live in ("<at>", "<script>", "[x](https"):
        assert live not in teams_text
    for live in ("<!channel>", "<@U024BE7LH>", "<script>", "@here"):
        assert live not in slack_text
    assert "…(cut)" in _texts(card)[1] and len(slack_text.encode()) < 28_000


def test_a_digest_rule_holds_the_incident_and_its_digest_lists_and_links_it(world):
    rule = world.rule(incidents="new", delivery="digest", digest_minutes=5)
    world.notifier.handle(_event(title="An alert"))
    for _ in range(2):
        assert world.notifier.handle(_incident()).digested in (0, 1)
    assert world.queue.sent == [] and world.transport.sent == []  # held, once
    assert len(world.digests.held(rule.id)) == 2
    assert world.notifier.send_digests(datetime.now(UTC) + timedelta(hours=1)) == {
        rule.id: 2}
    [email] = world.transport.sent
    text = email.get_body(("plain",)).get_content()
    assert "- Incident: Multi-stage incident" in text and WEB in text
    assert "- An alert" in text
    assert world.work() == ["sent", "sent"]
    [card] = world.poster.to(TEAMS_URL)
    assert _teams_ok(card)
    lines = "\n".join(_texts(card))
    assert "Digest: 2 alerts for rule SOC" in lines and "High (2)" in lines
    assert f"({world.notifier.portal}/incidents/{TENANT}/1042)" in lines
    [message] = world.poster.to(SLACK_URL)
    assert _slack_ok(message)


def test_an_incident_over_the_rules_hourly_cap_waits_for_the_digest(world):
    rule = world.rule(incidents="new", max_per_hour=1)
    world.notifier.handle(_incident())
    other = IncidentEvent(TENANT, "Northwind", "1043", "2026-12-03T07:05:00.0000000Z",
                          "new", {}, {**_incident().incident, "name": "Second"})
    assert world.notifier.handle(other).digested == 1
    assert len(world.transport.sent) == 1
    [held] = world.digests.held(rule.id)
    assert held.event["alert"]["title"] == "Incident: Second"
    assert held.event["webUrl"] == WEB
