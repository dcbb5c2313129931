"""Posting to Teams and Slack on the in-memory repositories, with a poster that answers
as told (no HTTP): one post per (rule, channel, alert version) whatever the redeliveries,
429 put back with its Retry-After without holding anything else, 4xx marking the channel
failing until the rule is saved or a test post works, 5xx retried then poisoned with the
reason; and the webhook settings a rule may name."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from shared.messages import AlertEvent, ChannelPost
from shared.notify.channels.delivery import ChannelDelivery, ChannelStores
from shared.notify.channels.transport import RateLimited, Rejected, Unreachable
from shared.notify.channels.webhooks import Webhook, WebhookRefused, Webhooks, masked
from shared.notify.rules import parse_rule
from shared.notify.service import Notifier, NotifyStores
from shared.storage.memory.channels import MemoryChannelStatus
from shared.storage.memory.ingest import MemoryQueue
from shared.storage.memory.notify import (
    MemoryAppHealth,
    MemoryDigests,
    MemoryMailOutbox,
    MemoryNotifyLedger,
    MemoryRules,
)
from shared.storage.queues import ChannelQueue
from shared.validation import ValidationError
from tests.helpers import settings as make_settings
from tests.unit.test_notifier import FakeNotices, FakeTransport

TENANT = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
TEAMS_URL = "https://prod-12.westeurope.logic.azure.com/workflows/abc/triggers?sig=SECRET1"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/SECRET2"
ENV = {"TEAMS_SOC": TEAMS_URL, "SLACK_SOC": SLACK_URL}
CHANNELS = [{"type": "teams", "name": "soc-teams", "webhook_setting": "TEAMS_SOC"},
            {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_SOC"}]


class FakePoster:
    """Records each post; `answers[url]`: exceptions to raise first, in order."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, list[Exception]] = {}

    def post(self, webhook: Webhook, payload: dict[str, Any]) -> None:
        queued = self.answers.get(webhook.url) or []
        if queued:
            raise queued.pop(0)
        self.posted.append((webhook.url, payload))

    def to(self, url: str) -> list[dict[str, Any]]:
        return [p for u, p in self.posted if u == url]


class World:
    def __init__(self) -> None:
        self.settings = make_settings(MAIL_FROM="alerts@mssp.example", MSSP_NAME="Contoso MSSP")
        self.rules, self.ledger = MemoryRules(), MemoryNotifyLedger()
        self.status, self.queue = MemoryChannelStatus(), MemoryQueue()
        self.transport, self.poster = FakeTransport(), FakePoster()
        self.webhooks = Webhooks(dict(ENV), local=False)
        self.digests = MemoryDigests()
        self.notifier = Notifier(self.settings, self.transport, NotifyStores(
            rules=self.rules, ledger=self.ledger, digests=self.digests,
            outbox=MemoryMailOutbox(), health=MemoryAppHealth(), notices=FakeNotices(),
            channel_queue=ChannelQueue(self.queue), channel_status=self.status))
        self.delivery = ChannelDelivery(
            ChannelStores(self.rules, self.ledger, self.status, ChannelQueue(self.queue)),
            self.webhooks, self.poster, "Contoso MSSP", "https://hub.example/api/portal")

    def rule(self, recipients: list[str] | None = None, **fields: Any):
        body = {"name": "SOC", "recipients": ["soc@mssp.example"] if recipients is None
                else recipients, "channels": CHANNELS, **fields}
        return self.notifier.save_rule(parse_rule(body, TENANT, webhooks=self.webhooks))

    def taken(self) -> list[tuple[ChannelPost, int | None]]:
        return [(ChannelPost.parse(text), delay) for text, delay in self.queue.take()]

    def work(self) -> list[str]:
        """The channel worker: every queued post, as the host hands them (delays ignored)."""
        return [self.delivery.post(post) for post, _ in self.taken()]


@pytest.fixture
def world() -> World:
    return World()


def _event(version: str = "2026-12-03T07:00:00Z", title: str = "Bad thing") -> AlertEvent:
    return AlertEvent(TENANT, "Northwind", "da1", version, "new", {}, {
        "id": "da1", "title": title, "severity": "High",
        "alertCreationTime": "2099-01-01T00:00:00Z",
        "lastUpdateTime": version})


def test_email_teams_and_slack_each_get_one_per_alert_version_whatever_the_redeliveries(world):
    world.rule()
    event = _event()
    for _ in range(3):  # the event delivered three times
        world.notifier.handle(event)
    assert world.work() == ["sent", "sent"] + ["duplicate"] * 4
    assert len(world.transport.sent) == 1
    assert len(world.poster.to(TEAMS_URL)) == 1 and len(world.poster.to(SLACK_URL)) == 1
    world.notifier.handle(_event("2026-12-03T08:00:00Z"))  # a new version: posted again
    assert world.work() == ["sent", "sent"] and len(world.transport.sent) == 2
    assert world.status.get(world.rules.all()[0].id, "soc-slack").result == "sent"


def test_a_429_is_put_back_with_its_retry_after_and_holds_nothing_else_back(world):
    rule = world.rule()
    world.poster.answers[SLACK_URL] = [RateLimited(7)]
    world.notifier.handle(_event())
    assert world.work() == ["sent", "deferred"]  # Teams went, the email too
    assert len(world.transport.sent) == 1
    [(again, delay)] = world.taken()
    assert (again.channel, again.deferrals, delay) == ("soc-slack", 1, 7)
    assert world.status.get(rule.id, "soc-slack").result.startswith("rate limited")
    assert world.delivery.post(again) == "sent"
    assert world.delivery.post(again) == "duplicate"  # the original, redelivered
    assert len(world.poster.to(SLACK_URL)) == 1


def test_a_post_put_back_too_often_counts_as_unreachable(world):
    world.rule()
    world.notifier.handle(_event())
    post = next(p for p, _ in world.taken() if p.channel == "soc-slack")
    world.poster.answers[SLACK_URL] = [RateLimited(1)]
    with pytest.raises(Unreachable):
        world.delivery.post(ChannelPost(**{**vars_of(post), "deferrals": 20}))


def vars_of(post: ChannelPost) -> dict[str, Any]:
    return {f: getattr(post, f) for f in post.__slots__}


def test_a_404_marks_the_channel_failing_without_blocking_the_email_or_the_other(world, caplog):
    rule = world.rule()
    world.poster.answers[TEAMS_URL] = [Rejected("404 Not Found")]
    caplog.set_level(logging.INFO)
    world.notifier.handle(_event())
    assert world.work() == ["refused", "sent"]
    assert len(world.transport.sent) == 1
    state = world.status.get(rule.id, "soc-teams")
    assert state.failing and state.reason == "404 Not Found"
    assert "SECRET1" not in caplog.text and "logic.azure.com/…/****" in caplog.text
    # further posts are held back, not retried, until it is fixed
    world.notifier.handle(_event("2026-12-03T08:00:00Z"))
    assert world.work() == ["held back", "sent"]
    assert len(world.poster.to(TEAMS_URL)) == 0
    world.notifier.save_rule(rule)  # saved again: tried again
    world.notifier.handle(_event("2026-12-03T09:00:00Z"))
    assert world.work() == ["sent", "sent"]
    assert not world.status.get(rule.id, "soc-teams").failing


def test_a_test_post_that_works_clears_the_failing_mark(world):
    rule = world.rule()
    world.status.mark_failing(rule.id, "soc-slack", TENANT, "410 channel_is_archived",
                              world.webhooks.resolve("slack", "SLACK_SOC").fingerprint)
    world.poster.answers[SLACK_URL] = [Rejected("410 channel_is_archived")]
    result = world.delivery.test(rule, "soc-slack")
    assert (result.sent, result.error, result.webhook) == (
        False, "410 channel_is_archived", "https://hooks.slack.com/…/****")
    assert world.status.get(rule.id, "soc-slack").failing
    assert world.delivery.test(rule, "soc-slack").sent
    assert not world.status.get(rule.id, "soc-slack").failing
    [sample] = world.poster.to(SLACK_URL)
    assert "Test post for rule SOC" in sample["blocks"][0]["text"]["text"]
    assert world.delivery.test(rule, "nope") is None


def test_a_channel_taken_off_or_a_rule_deleted_leaves_no_failing_row_behind(world):
    """Else the health check would stay degraded for a channel nothing posts to."""
    rule = world.rule()
    for name in ("soc-teams", "soc-slack"):
        world.status.mark_failing(rule.id, name, TENANT, "404 no_service", "x")
    world.notifier.save_rule(parse_rule({"name": "SOC", "recipients": ["soc@mssp.example"],
                                         "channels": CHANNELS[1:]}, TENANT, existing=rule))
    assert [(s.name, s.failing) for s in world.status.for_rule(rule.id)] == [
        ("soc-slack", False)]  # the one kept is tried again
    world.status.mark_failing(rule.id, "soc-slack", TENANT, "404 no_service", "x")
    world.notifier.delete_rule(rule)
    assert world.status.for_rule(rule.id) == [] and not world.status.failing()
    assert world.rules.get(TENANT, rule.id) is None


def test_a_new_url_in_the_setting_is_tried_although_the_old_one_failed(world):
    rule = world.rule()
    world.poster.answers[SLACK_URL] = [Rejected("404 no_service")]
    world.notifier.handle(_event())
    assert world.work() == ["sent", "refused"]
    world.webhooks.env["SLACK_SOC"] = SLACK_URL + "-new"
    world.notifier.handle(_event("2026-12-03T08:00:00Z"))
    assert world.work() == ["sent", "sent"]
    assert world.status.get(rule.id, "soc-slack").result == "sent"


def test_a_5xx_releases_the_claim_for_the_queue_to_retry_and_poison_says_why(world):
    rule = world.rule()
    world.poster.answers[SLACK_URL] = [Unreachable("503 Service Unavailable")]
    world.notifier.handle(_event())
    posts = [p for p, _ in world.taken()]
    slack_post = next(p for p in posts if p.channel == "soc-slack")
    with pytest.raises(Unreachable):
        world.delivery.post(slack_post)
    assert world.ledger.row(rule.id, slack_post.key)["State"] == "retry"
    assert "503" in world.delivery.poison_reason(slack_post.to_message())
    assert world.delivery.post(slack_post) == "sent"  # the host's retry
    assert not world.status.get(rule.id, "soc-slack").failing


def test_a_post_for_a_removed_channel_or_rule_is_dropped(world):
    rule = world.rule()
    world.notifier.handle(_event())
    posts = [p for p, _ in world.taken()]
    world.notifier.save_rule(parse_rule({"name": "SOC", "recipients": ["a@mssp.example"]},
                                        TENANT, existing=rule))
    assert [world.delivery.post(p) for p in posts] == ["gone", "gone"]
    assert world.poster.posted == []


def test_a_setting_emptied_since_marks_the_channel_failing(world):
    rule = world.rule()
    world.webhooks.env["TEAMS_SOC"] = ""
    world.notifier.handle(_event())
    assert world.work() == ["failing", "sent"]
    assert "not set" in world.status.get(rule.id, "soc-teams").reason


def test_a_digest_rule_posts_one_card_per_channel_and_a_channel_only_rule_no_email(world):
    rule = world.rule(recipients=[], delivery="digest", digest_minutes=5)
    for i in range(3):
        world.notifier.handle(_event(f"2026-12-03T0{i}:00:00Z", title=f"A{i}"))
    assert world.queue.sent == []  # held for the digest
    assert world.notifier.send_digests() == {rule.id: 3}
    assert world.work() == ["sent", "sent"]
    assert world.transport.sent == []
    [card] = world.poster.to(TEAMS_URL)
    texts = [b["text"] for b in card["attachments"][0]["content"]["body"]]
    assert texts[0] == "Digest: 3 alerts for rule SOC" and "High (3)" in texts


def test_a_rule_names_a_webhook_setting_on_its_platforms_host():
    local = Webhooks({"LOOP": "http://127.0.0.1:7071/hook"}, local=True)
    assert local.resolve("slack", "LOOP").url == "http://127.0.0.1:7071/hook"
    cases = {
        "https://hooks.slack.com/services/T/B/x": ("slack", True),
        "https://prod-1.westus.logic.azure.com:443/workflows/x": ("teams", True),
        "https://default123.environment.api.powerplatform.com/powerautomate/x": ("teams", True),
        "https://hooks.slack.com/services/T/B/x#": ("teams", False),
        "http://hooks.slack.com/services/T/B/x": ("slack", False),
        "https://hooks.slack.com.evil.example/x": ("slack", False),
        "https://hooks.slack.com@evil.example/x": ("slack", False),
        "https://evil.example/?hooks.slack.com": ("slack", False),
        "https://logic.azure.com/x": ("teams", False),
        "https://evillogic.azure.com/x": ("teams", False),
        "http://127.0.0.1:9/hook": ("slack", False),  # loopback: only locally
        "not a url": ("slack", False),
    }
    for url, (kind, ok) in cases.items():
        hooks = Webhooks({"HOOK": url}, local=False)
        if ok:
            assert hooks.resolve(kind, "HOOK").url == url
        else:
            with pytest.raises(WebhookRefused) as refused:
                hooks.resolve(kind, "HOOK")
            assert url not in str(refused.value)
    with pytest.raises(WebhookRefused, match="not set"):
        Webhooks({}, local=False).resolve("slack", "MISSING")
    assert masked(SLACK_URL) == "https://hooks.slack.com/…/****"


def test_the_api_refuses_a_channel_whose_setting_is_no_webhook_naming_the_field():
    hooks = Webhooks({"SLACK_SOC": "https://evil.example/x"}, local=False)
    with pytest.raises(ValidationError) as refused:
        parse_rule({"name": "r", "recipients": [], "channels": [
            {"type": "slack", "name": "a", "webhook_setting": "SLACK_SOC"},
            {"type": "teams", "name": "A", "webhook_setting": "NOPE"}]}, TENANT,
            webhooks=hooks)
    fields = {e["field"] for e in refused.value.errors}
    assert fields == {"channels.0.webhook_setting", "channels.1.name",
                      "channels.1.webhook_setting"}
    assert "evil.example" not in str(refused.value.errors)
    with pytest.raises(ValidationError) as refused:  # a URL where a setting's name goes
        parse_rule({"name": "r", "recipients": [], "channels": [
            {"type": "teams", "name": "b", "webhook_setting": "https://x"}]}, TENANT,
            webhooks=hooks)
    assert {e["field"] for e in refused.value.errors} == {"channels.0.webhook_setting"}


def test_health_is_degraded_naming_the_failing_channels():
    from shared.ops.health import reasons

    ingestion = {"failing_tenants": 0, "app_credential_error": None, "poisoned_last_day": {}}
    assert reasons(ingestion, [], False, []) == []
    [reason] = reasons(ingestion, [], False, ["soc-teams (404)", "ops (webhook setting)"])
    assert reason["code"] == "channels_failing"
    assert "2 notification channel(s)" in reason["message"]
    assert "soc-teams (404)" in reason["message"]


def test_retry_after_is_seconds_within_bounds_and_errors_never_carry_the_url():
    import socket

    from shared.notify.channels.transport import WebhookPoster, retry_after

    assert [retry_after(v) for v in ("7", " 12 ", "0", "99999", None,
                                     "Wed, 21 Oct 2026 07:28:00 GMT")] == [7, 12, 1, 3600,
                                                                            30, 30]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nobody listens
    with pytest.raises(Unreachable) as caught:
        WebhookPoster().post(Webhook(f"http://127.0.0.1:{port}/hook?sig=SECRET3"), {})
    assert "SECRET3" not in str(caught.value) and "…/****" in str(caught.value)
