"""Teams and Slack posts end to end on Azurite: the notifier queues one message per
channel post on `notify-channels`, the channel worker posts it over real HTTP to the local
receiver (devtools/webhook_receiver.py), beside emails to a real SMTP server. The receiver
checks every post as the platform documents it (Adaptive Card, Block Kit, size limits): a
post it refuses fails the test (tests/integration/channel_fixtures.py)."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.messages import AlertEvent, ChannelPost
from shared.notify.channels.delivery import ChannelDelivery
from shared.notify.channels.transport import Rejected, Unreachable, WebhookPoster
from shared.notify.channels.webhooks import Webhook
from shared.notify.rules import parse_rule
from shared.notify.service import Notifier
from shared.notify.transport import SmtpTransport
from shared.ops.health import failing_channels
from shared.services import channel_delivery_for, notifier_for
from shared.storage import tables
from tests.helpers import settings as make_settings
from tests.integration.channel_fixtures import checked_receiver, shown, taken
from tests.integration.test_notify import Inbox, Server

HOSTILE = ("<!channel> <!here> <@U024BE7LH> <at>Everyone</at> @channel *bold* _it_ ~s~ "
           "`code` [click](https://evil.example) <script>alert(1)</script> <b>html</b> "
           "&amp; # head > quote")


@pytest.fixture
def receiver():
    with checked_receiver() as found:
        yield found


@pytest.fixture
def inbox():
    box = Inbox()
    server = Server(box)
    server.start()
    yield box, server
    server.stop()


class World:
    def __init__(self, storage, inbox, receiver, monkeypatch) -> None:
        monkeypatch.setenv("TEAMS_TEST_HOOK", receiver.url("teams", "test"))
        monkeypatch.setenv("SLACK_TEST_HOOK", receiver.url("slack", "test"))
        self.settings = make_settings(AzureWebJobsStorage=storage.connection_string,
                                      MAIL_FROM="alerts@mssp.example", MSSP_NAME="Contoso")
        self.inbox, server = inbox
        self.notifier: Notifier = notifier_for(
            self.settings, SmtpTransport("127.0.0.1", server.port, "none", timeout=5))
        self.delivery: ChannelDelivery = channel_delivery_for(self.settings, WebhookPoster())
        self.queue = tables.queue(storage, tables.CHANNEL_QUEUE)
        self.storage, self.receiver = storage, receiver
        self.tenant = str(uuid.uuid4())  # its own rules only
        self.queue.clear_messages()

    def rule(self, **fields: Any):
        body = {"name": f"SOC {uuid.uuid4().hex[:6]}", "recipients": ["soc@mssp.example"],
                "channels": [
                    {"type": "teams", "name": "teams", "webhook_setting": "TEAMS_TEST_HOOK"},
                    {"type": "slack", "name": "slack", "webhook_setting": "SLACK_TEST_HOOK"}],
                **fields}
        rule = parse_rule(body, self.tenant, webhooks=self.delivery.webhooks)
        return self.notifier.save_rule(rule)

    def work(self) -> list[str]:
        """The channel worker: take every visible message, post it, delete it; an
        Unreachable leaves it for the host's retry (visible again at once here), as the
        queue trigger does."""
        done, retry = [], []
        for message in self.queue.receive_messages(messages_per_page=32, visibility_timeout=30):
            try:
                done.append(self.delivery.post(ChannelPost.parse(message.content)))
            except Unreachable:
                retry.append(message)
                done.append("unreachable")
                continue
            self.queue.delete_message(message)
        for message in retry:  # after the loop, which would take it again at once
            self.queue.update_message(message, visibility_timeout=0)
        return done

    def posts(self, platform: str) -> list[dict[str, Any]]:
        """What the platform's hook took (a post it refused as invalid fails the test)."""
        return taken(self.receiver, platform, "test")


@pytest.fixture
def world(storage_env, inbox, receiver, monkeypatch) -> World:
    return World(storage_env, inbox, receiver, monkeypatch)


def _event(tenant: str, version: str, title: str = "Ransomware <!channel> <at>all</at>"
           ) -> AlertEvent:
    return AlertEvent(tenant, "Northwind", "da9", version, "new", {}, {
        "id": "da9", "title": title, "severity": "High", "category": "Ransomware",
        "computerDnsName": "pc-9", "alertCreationTime": "2099-01-01T00:00:00Z",
        "lastUpdateTime": version})


def test_one_email_and_one_post_per_channel_per_alert_version_redelivery_sends_nothing_twice(
        world):
    world.rule()
    event = _event(world.tenant, "2026-12-03T07:00:00.0000000Z")
    world.notifier.handle(event)
    world.notifier.handle(event)  # redelivered before the posts went
    assert sorted(world.work()) == ["duplicate", "duplicate", "sent", "sent"]
    world.notifier.handle(event)  # and after
    assert sorted(world.work()) == ["duplicate", "duplicate"]
    assert len(world.inbox.messages) == 1
    assert len(world.receiver.posts()) == 2  # one post per channel reached the receiver
    [card] = world.posts("teams")
    [message] = world.posts("slack")
    assert card["attachments"][0]["content"]["version"] == "1.5"
    assert "<!channel>" not in json.dumps(message) and "<at>" not in json.dumps(card)
    world.notifier.handle(_event(world.tenant, "2026-12-03T08:00:00.0000000Z"))
    assert world.work() == ["sent", "sent"]
    assert len(world.inbox.messages) == 2 and len(world.posts("slack")) == 2


def test_a_429_then_success_waits_for_retry_after_and_holds_back_nothing_else(world):
    rule = world.rule()
    world.receiver.answer("slack", "test", 429, times=1, retry_after=2)
    world.notifier.handle(_event(world.tenant, "2026-12-03T07:00:00.0000000Z"))
    assert sorted(world.work()) == ["deferred", "sent"]
    assert len(world.posts("teams")) == 1 and len(world.inbox.messages) == 1
    assert world.work() == []  # invisible for Retry-After
    time.sleep(2.5)
    assert world.work() == ["sent"]
    assert len(world.posts("slack")) == 1
    assert [p["status"] for p in world.receiver.posts("slack", "test")] == [429, 200]
    assert world.delivery.status.get(rule.id, "slack").result == "sent"


def test_a_404_webhook_is_marked_failing_without_blocking_the_email(world):
    rule = world.rule()
    world.receiver.answer("teams", "test", 404, times=1)  # the flow was deleted
    world.notifier.handle(_event(world.tenant, "2026-12-03T07:00:00.0000000Z"))
    assert sorted(world.work()) == ["refused", "sent"]
    assert len(world.inbox.messages) == 1 and len(world.posts("slack")) == 1
    state = world.delivery.status.get(rule.id, "teams")
    assert state.failing and state.reason.startswith('404 {"error": {"code": '
                                                     '"WorkflowNotFound"')
    assert "teams (404)" in failing_channels(world.storage)
    world.notifier.handle(_event(world.tenant, "2026-12-03T08:00:00.0000000Z"))
    assert sorted(world.work()) == ["held back", "sent"]
    assert world.delivery.test(rule, "teams").sent  # fixed: a test post clears it
    assert "teams (404)" not in failing_channels(world.storage)
    world.notifier.handle(_event(world.tenant, "2026-12-03T09:00:00.0000000Z"))
    assert world.work() == ["sent", "sent"]


def test_a_5xx_is_retried_through_the_queue_posting_once_and_poison_would_say_why(world):
    rule = world.rule()
    world.receiver.answer("teams", "test", 500, times=2)
    world.notifier.handle(_event(world.tenant, "2026-12-03T07:00:00.0000000Z"))
    assert sorted(world.work()) == ["sent", "unreachable"]
    [message] = world.queue.receive_messages(visibility_timeout=1)
    assert "error: 500" in world.delivery.poison_reason(message.content)
    assert world.receiver.base_url not in world.delivery.poison_reason(message.content)
    world.queue.update_message(message, visibility_timeout=0)
    assert world.work() == ["unreachable"]
    assert world.work() == ["sent"]
    assert world.work() == []
    assert len(world.posts("teams")) == 1 and len(world.posts("slack")) == 1
    assert [p["status"] for p in world.receiver.posts("teams", "test")] == [500, 500, 202]
    state = world.delivery.status.get(rule.id, "teams")
    assert state.result == "sent" and not state.failing


def test_a_digest_is_one_card_per_channel_grouped_by_tenant_and_severity(world):
    rule = world.rule(delivery="digest", digest_minutes=5)
    for i, severity in enumerate(("High", "Low", "High")):
        event = _event(world.tenant, f"2026-12-03T0{i}:00:00.0000000Z", title=f"Alert {i}")
        event.alert.update(id=f"d{i}", severity=severity)
        world.notifier.handle(AlertEvent(**{**vars_of(event), "alert_id": f"d{i}",
                                            "event_id": ""}))
    assert world.work() == []
    world.notifier.send_digests(datetime.now(UTC) + timedelta(hours=1))
    assert world.work() == ["sent", "sent"]
    assert len(world.inbox.messages) == 1
    [card] = world.posts("teams")
    texts = [b["text"] for b in card["attachments"][0]["content"]["body"]]
    assert texts[0] == f"Digest: 3 alerts for rule {rule.name}"
    assert texts[1] == "Northwind" and texts[2] == "High (2)" and "Low (1)" in texts
    [message] = world.posts("slack")
    assert message["blocks"][0]["type"] == "header"


def vars_of(event: AlertEvent) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__slots__}


def test_hostile_titles_are_inert_in_what_each_platform_receives(world):
    """Mentions, markdown and HTML in an alert (its title, category, device) reach the
    receiver as text, and a title far over the limits is cut, not refused."""
    world.rule()
    event = _event(world.tenant, "2026-12-03T07:00:00.0000000Z", title=HOSTILE)
    event.alert.update(category=HOSTILE, computerDnsName=HOSTILE)
    world.notifier.handle(event)
    long = _event(world.tenant, "2026-12-03T08:00:00.0000000Z", title=HOSTILE * 200)
    world.notifier.handle(long)
    assert world.work() == ["sent"] * 4
    slack_texts = "\n".join(shown(world.posts("slack")))
    for live in ("<!channel>", "<!here>", "<@U024BE7LH>", "<script>", "<b>", "<https://",
                 "@channel"):
        assert live not in slack_texts
    assert "&lt;!channel&gt;" in slack_texts and "&lt;b&gt;html" in slack_texts
    mrkdwn = "\n".join(_mrkdwn(world.posts("slack")))  # where `*` and `_` would format
    assert "*Device*" in mrkdwn and "&lt;!channel&gt;" in mrkdwn
    assert re.search(r"(?<!\u200b)[*_~`](bold|it|s|code)", mrkdwn) is None
    teams_texts = "\n".join(shown(world.posts("teams")))
    for live in ("<at>", "<script>", "<b>", "[click](https"):
        assert live not in teams_texts
    assert "\\*bold\\*" in teams_texts and "\\[click\\](https://evil.example)" in teams_texts
    assert all(p["size"] < 28 * 1024 for p in world.receiver.posts())


def _mrkdwn(node: Any) -> list[str]:
    """The texts Slack reads as mrkdwn (not plain_text, where nothing formats)."""
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "mrkdwn" else []
        return own + [t for v in node.values() for t in _mrkdwn(v)]
    if isinstance(node, list):
        return [t for v in node for t in _mrkdwn(v)]
    return []


def test_a_webhook_url_is_never_logged_not_even_by_urllib3_at_debug(receiver, caplog):
    """Slack's path is its token, Teams' query its signature: logs show neither."""
    caplog.set_level(logging.DEBUG)
    hook = Webhook(receiver.url("slack", "SECRET7") + "?sig=SECRET8")
    WebhookPoster().post(hook, {"text": "hello"})
    receiver.answer("slack", "SECRET7", 404, times=1)
    with pytest.raises(Rejected) as refused:
        WebhookPoster().post(hook, {"text": "hello"})
    assert str(refused.value) == "404 no_service"
    requests_logged = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("POST /…/**** HTTP" in line for line in requests_logged), requests_logged
    assert "SECRET" not in caplog.text
    assert len(taken(receiver, "slack", "SECRET7")) == 1
