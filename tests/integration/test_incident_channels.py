"""Incident rules on Teams and Slack through the real pieces: the Notifier and the channel
worker on Azurite (ledger, queue, digests), posting to the local webhook receiver
(devtools/webhook_receiver.py), which refuses what the platform would refuse: one post per
(rule, channel, incident version) whatever the redeliveries, a severity rise posted once
more, hostile names inert, and a digest rule's one card listing its incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.messages import IncidentEvent
from tests.integration import test_notify_channels as channels
from tests.integration.channel_fixtures import shown
from tests.integration.test_notify_channels import HOSTILE, World

inbox, receiver = channels.inbox, channels.receiver  # the alert channel tests' fixtures


@pytest.fixture
def world(storage_env, inbox, receiver, monkeypatch) -> World:
    return World(storage_env, inbox, receiver, monkeypatch)


def _incident(tenant: str, version: str, severity: str = "high", before: str = "",
              name: str = "Multi-stage incident on one endpoint") -> IncidentEvent:
    return IncidentEvent(tenant, "Northwind", "1042", version,
                         "updated" if before else "new",
                         {"severity": [before, severity]} if before else {},
                         {"name": name, "severity": severity, "status": "active",
                          "assignee": "soc@mssp.example", "alertIds": ["ga1", "ga2"],
                          "alertCount": 2, "tags": ["vip"],
                          "createdDateTime": "2026-12-03T06:00:00Z",
                          "lastUpdateDateTime": version,
                          "webUrl": f"https://security.microsoft.com/incidents/1042?tid={tenant}"})


def test_one_post_per_channel_per_incident_version_and_redelivery_posts_nothing_twice(
        world: World):
    world.rule(incidents="new_or_severity_rise")
    event = _incident(world.tenant, "2026-12-03T07:00:00.0000000Z")
    world.notifier.handle(event)
    world.notifier.handle(event)  # redelivered before the posts went
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    world.notifier.handle(event)  # and after
    assert sorted(world.work()) == ["duplicate", "duplicate"]
    assert len(world.inbox.messages) == 1
    [card] = world.posts("teams")
    [message] = world.posts("slack")
    texts = shown(card)
    assert "High · New incident" in texts and "Multi-stage incident on one endpoint" in texts
    assert message["blocks"][0]["text"]["text"].endswith(
        "Incident: Multi-stage incident on one endpoint")
    rose = _incident(world.tenant, "2026-12-03T08:00:00.0000000Z", "high", before="medium")
    world.notifier.handle(rose)
    world.notifier.handle(rose)
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    assert "High · Incident severity raised: Medium → High" in shown(world.posts("teams")[1])
    assert len(world.inbox.messages) == 2 and len(world.receiver.posts()) == 4


def test_hostile_incident_names_are_inert_in_what_each_platform_receives(world: World):
    world.rule(incidents="new")
    world.notifier.handle(_incident(world.tenant, "2026-12-03T07:00:00.0000000Z",
                                    name=HOSTILE))
    world.notifier.handle(_incident(world.tenant, "2026-12-03T08:00:00.0000000Z",
                                    name=HOSTILE * 200))
    assert world.work() == ["sent"] * 4
    slack_texts = "\n".join(shown(world.posts("slack")))
    for live in ("<!channel>", "<!here>", "<@U024BE7LH>", "<script>", "<b>", "@channel"):
        assert live not in slack_texts
    teams_texts = "\n".join(shown(world.posts("teams")))
    for live in ("<at>", "<script>", "<b>", "[click](https"):
        assert live not in teams_texts
    assert "…(cut)" in teams_texts and "…(cut)" in slack_texts
    assert all(p["size"] < 28 * 1024 for p in world.receiver.posts())


def test_a_digest_rule_lists_its_incident_in_its_one_card_per_channel(world: World):
    rule = world.rule(incidents="new", delivery="digest", digest_minutes=5)
    world.notifier.handle(_incident(world.tenant, "2026-12-03T07:00:00.0000000Z"))
    assert world.work() == []  # held for the digest
    world.notifier.send_digests(datetime.now(UTC) + timedelta(hours=1))
    assert world.work() == ["sent", "sent"]
    [email] = world.inbox.messages
    assert "Incident: Multi-stage incident on one endpoint" in str(email)
    [card] = world.posts("teams")
    texts = shown(card)
    assert f"Digest: 1 alerts for rule {rule.name}" in texts and "High (1)" in texts
    assert any("Incident: Multi-stage incident on one endpoint" in t for t in texts)
    assert f"/incidents/{world.tenant}/1042)" in json.dumps(card)
    [message] = world.posts("slack")
    assert "Incident: Multi-stage incident on one endpoint" in json.dumps(message)
