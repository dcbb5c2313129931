"""Teams and Slack posts end to end on Azurite: the notifier queues one message per
channel post on `notify-channels`, the channel worker posts it over real HTTP to a local
receiver, beside emails to a real SMTP server.

The receiver here is a tiny http.server that records what is posted and answers as told
(devtools/webhook_receiver.py, which also validates payloads against each platform's
schema, is being built in parallel; these tests move to it once it is merged)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.messages import AlertEvent, ChannelPost
from shared.notify.channels.delivery import ChannelDelivery
from shared.notify.channels.transport import WebhookPoster
from shared.notify.rules import parse_rule
from shared.notify.service import Notifier
from shared.notify.transport import SmtpTransport
from shared.ops.health import failing_channels
from shared.services import channel_delivery_for, notifier_for
from shared.storage import tables
from tests.helpers import settings as make_settings
from tests.integration.test_notify import Inbox, Server


class Receiver:
    """Records each POST per path; `answers[path]`: (status, headers, body) to give first."""

    def __init__(self) -> None:
        self.posts: dict[str, list[dict[str, Any]]] = {}
        self.answers: dict[str, list[tuple[int, dict[str, str], str]]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                queued = receiver.answers.get(self.path) or []
                status, headers, text = queued.pop(0) if queued else (200, {}, "ok")
                if status == 200:
                    receiver.posts.setdefault(self.path, []).append(json.loads(body))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest.fixture
def inbox():
    box = Inbox()
    server = Server(box)
    server.start()
    yield box, server
    server.stop()


class World:
    def __init__(self, storage, inbox, receiver, monkeypatch) -> None:
        monkeypatch.setenv("TEAMS_TEST_HOOK", f"{receiver.url}/teams")
        monkeypatch.setenv("SLACK_TEST_HOOK", f"{receiver.url}/slack")
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
        """The channel worker: take every visible message, post it, delete it (a raise
        leaves it for the host's retry, as the queue trigger does)."""
        done = []
        for message in self.queue.receive_messages(messages_per_page=32, visibility_timeout=30):
            done.append(self.delivery.post(ChannelPost.parse(message.content)))
            self.queue.delete_message(message)
        return done

    def posts(self, path: str) -> list[dict[str, Any]]:
        return self.receiver.posts.get(path, [])


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
    [card] = world.posts("/teams")
    [message] = world.posts("/slack")
    assert card["attachments"][0]["content"]["version"] == "1.5"
    assert "<!channel>" not in json.dumps(message) and "<at>" not in json.dumps(card)
    world.notifier.handle(_event(world.tenant, "2026-12-03T08:00:00.0000000Z"))
    assert world.work() == ["sent", "sent"]
    assert len(world.inbox.messages) == 2 and len(world.posts("/slack")) == 2


def test_a_429_then_success_waits_for_retry_after_and_holds_back_nothing_else(world):
    rule = world.rule()
    world.receiver.answers["/slack"] = [(429, {"Retry-After": "2"}, "rate_limited")]
    world.notifier.handle(_event(world.tenant, "2026-12-03T07:00:00.0000000Z"))
    assert sorted(world.work()) == ["deferred", "sent"]
    assert len(world.posts("/teams")) == 1 and len(world.inbox.messages) == 1
    assert world.work() == []  # invisible for Retry-After
    time.sleep(2.5)
    assert world.work() == ["sent"]
    assert len(world.posts("/slack")) == 1
    assert world.delivery.status.get(rule.id, "slack").result == "sent"


def test_a_404_webhook_is_marked_failing_without_blocking_the_email(world):
    rule = world.rule()
    world.receiver.answers["/teams"] = [(404, {}, "Not Found")]
    world.notifier.handle(_event(world.tenant, "2026-12-03T07:00:00.0000000Z"))
    assert sorted(world.work()) == ["refused", "sent"]
    assert len(world.inbox.messages) == 1 and len(world.posts("/slack")) == 1
    state = world.delivery.status.get(rule.id, "teams")
    assert state.failing and state.reason == "404 Not Found"
    assert "teams (404)" in failing_channels(world.storage)
    world.notifier.handle(_event(world.tenant, "2026-12-03T08:00:00.0000000Z"))
    assert sorted(world.work()) == ["held back", "sent"]
    assert world.delivery.test(rule, "teams").sent  # fixed: a test post clears it
    assert "teams (404)" not in failing_channels(world.storage)
    world.notifier.handle(_event(world.tenant, "2026-12-03T09:00:00.0000000Z"))
    assert world.work() == ["sent", "sent"]


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
    [card] = world.posts("/teams")
    texts = [b["text"] for b in card["attachments"][0]["content"]["body"]]
    assert texts[0] == f"Digest: 3 alerts for rule {rule.name}"
    assert texts[1] == "Northwind" and texts[2] == "High (2)" and "Low (1)" in texts
    [message] = world.posts("/slack")
    assert message["blocks"][0]["type"] == "header"


def vars_of(event: AlertEvent) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__slots__}
