"""Cluster rules on Teams and Slack through the real pieces: the Notifier and the channel
worker on Azurite (ledger, queue), posting over HTTP to the local webhook receiver
(devtools/webhook_receiver.py), which refuses what the platform would refuse: one post per
(rule, channel, cluster version) whatever the redeliveries, a tenant joining posted once
more naming it, hostile indicator text inert; a tenant's rule with channels gets nothing
of a cluster, and customers' rules (email, digest, channels) carry their own alert text
only (issue 22, item 7)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.messages import AlertEvent
from shared.notify.rules import GLOBAL, parse_rule
from tests.cluster_events import HOSTILE_URL, TENANTS, cluster_event
from tests.integration import test_notify_channels as channels
from tests.integration.channel_fixtures import shown
from tests.integration.test_notify_channels import HOSTILE, World

inbox, receiver = channels.inbox, channels.receiver  # the alert channel tests' fixtures


@pytest.fixture
def world(storage_env, inbox, receiver, monkeypatch) -> World:
    return World(storage_env, inbox, receiver, monkeypatch)


@pytest.fixture
def campaigns(world: World):
    """An MSSP-wide cluster rule with both channels, deleted after the test (the Azurite
    of a session is shared, and it would take every later test's clusters)."""
    rule = world.notifier.save_rule(parse_rule({
        "name": f"campaigns {uuid.uuid4().hex[:6]}", "recipients": ["soc@mssp.example"],
        "on_new": False, "clusters": "new_or_grew", "channels": [
            {"type": "teams", "name": "teams", "webhook_setting": "TEAMS_TEST_HOOK"},
            {"type": "slack", "name": "slack", "webhook_setting": "SLACK_TEST_HOOK"}]},
        GLOBAL, webhooks=world.delivery.webhooks))
    yield rule
    world.notifier.delete_rule(rule)


def _unique(version: int = 1, tenants=None, value: str = ""):
    return cluster_event(value=value or f"{HOSTILE_URL}#{uuid.uuid4().hex}",
                         version=version, tenants=tenants)


def test_one_post_per_channel_per_cluster_version_and_a_join_posts_once_more(
        world: World, campaigns):
    new = _unique()
    world.notifier.handle(new)
    world.notifier.handle(new)  # redelivered before the posts went
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    world.notifier.handle(new)  # and after
    assert sorted(world.work()) == ["duplicate", "duplicate"]
    [card] = world.posts("teams")
    [message] = world.posts("slack")
    assert "High · Seen at 2 customers" in shown(card)
    assert message["blocks"][0]["text"]["text"].endswith("Seen at 2 customers")
    grew = _unique(version=2, tenants=TENANTS, value=new.indicator)
    world.notifier.handle(grew)
    world.notifier.handle(grew)
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    assert "High · Seen at 3 customers · joined: Fabrikam" in shown(world.posts("teams")[1])
    assert "joined: Fabrikam" in world.posts("slack")[1]["text"]
    assert len(world.receiver.posts()) == 4
    mine = [m for m in world.inbox.messages if new.key in str(m)]
    assert len(mine) == 2  # one email per version beside the posts


def test_hostile_indicator_text_is_inert_in_what_each_platform_receives(world: World,
                                                                        campaigns):
    tenants = [{"id": t["id"], "name": HOSTILE, "alerts": 2} for t in TENANTS]
    for value in (f"{HOSTILE_URL}#{uuid.uuid4().hex}",
                  f"http://x.example/{uuid.uuid4().hex}?q=javascript:alert(1)" + HOSTILE * 40):
        world.notifier.handle(_unique(tenants=tenants, value=value))
    assert world.work() == ["sent"] * 4
    slack_texts = "\n".join(shown(world.posts("slack")))
    for live in ("<!channel>", "<!here>", "<@U024BE7LH>", "<script>", "<b>", "@channel"):
        assert live not in slack_texts
    teams_texts = "\n".join(shown(world.posts("teams")))
    for live in ("<at>", "<script>", "<b>", "[click](https"):
        assert live not in teams_texts
    assert "…(cut)" in teams_texts and "…(cut)" in slack_texts
    assert all(p["size"] < 28 * 1024 for p in world.receiver.posts())
    for payload in world.posts("teams"):  # the only link: the cluster's portal page
        assert "javascript:" not in json.dumps(
            payload["attachments"][0]["content"].get("actions", []))


def test_a_tenant_rule_with_channels_gets_nothing_of_a_cluster(world: World):
    world.rule()  # the customer's own rule: alerts, both channels, an email
    event = _unique(tenants=[{"id": world.tenant, "name": "Mine", "alerts": 1},
                             *TENANTS[:1]])
    world.notifier.handle(event)
    assert world.work() == [] and world.receiver.posts() == []
    assert not [m for m in world.inbox.messages if event.key in str(m)]


def test_customers_rules_carry_their_own_alert_text_only(world: World):
    """Two customers' rules, one emailing at once and one a digest, each with both
    channels: each gets its own tenant's alert, never the other's nor the cluster."""
    mine, other = world.tenant, str(uuid.uuid4())
    world.rule()
    digest = world.notifier.save_rule(parse_rule({
        "name": "other's digest", "recipients": ["contact@other.example"],
        "delivery": "digest", "digest_minutes": 5, "channels": [
            {"type": "teams", "name": "teams", "webhook_setting": "TEAMS_TEST_HOOK"},
            {"type": "slack", "name": "slack", "webhook_setting": "SLACK_TEST_HOOK"}]},
        other, webhooks=world.delivery.webhooks))
    try:
        world.notifier.handle(_unique(tenants=[{"id": mine, "name": "Mine", "alerts": 1},
                                               {"id": other, "name": "Other", "alerts": 1}]))
        world.notifier.handle(_alert(mine, "Mine: secret-of-mine"))
        world.notifier.handle(_alert(other, "Other: secret-of-other"))
        world.notifier.send_digests(datetime.now(UTC) + timedelta(hours=1))
        assert sorted(world.work()) == ["sent"] * 4
        emails = {str(m["To"]): str(m) for m in world.inbox.messages}
        assert "secret-of-mine" in emails["soc@mssp.example"]
        assert "secret-of-other" in emails["contact@other.example"]
        assert "secret-of-other" not in emails["soc@mssp.example"]
        assert "secret-of-mine" not in emails["contact@other.example"]
        posts = [json.dumps(p["body"]) for p in world.receiver.posts()]
        assert sum("secret-of-mine" in p for p in posts) == 2
        assert sum("secret-of-other" in p for p in posts) == 2
        assert not any("secret-of-mine" in p and "secret-of-other" in p for p in posts)
        assert not any("customers" in p for p in posts)  # no cluster post
    finally:
        world.notifier.delete_rule(digest)


def _alert(tenant: str, title: str) -> AlertEvent:
    version = "2026-12-03T07:00:00.0000000Z"
    return AlertEvent(tenant, f"Tenant {tenant[:4]}", f"da-{uuid.uuid4().hex[:6]}", version,
                      "new", {}, {"id": "da1", "title": title, "severity": "High",
                                  "alertCreationTime": "2099-01-01T00:00:00Z",
                                  "lastUpdateTime": version})
