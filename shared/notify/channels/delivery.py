"""Posting to Teams and Slack, exactly as email is sent: one post per (rule, channel,
alert version or digest) under a NotifyLedger claim, each post its own queue message so a
channel's trouble never holds back another rule, channel or the emails.

* 2xx: the ledger row is final (`sent`), the channel's last result is "sent".
* 429: the claim is released and the post queued again, invisible for Retry-After
  seconds; nothing else waits for it. After MAX_DEFERRALS it counts as unreachable.
* 403/404/410 and other 4xx: final (`refused`), and the channel is marked failing with
  the platform's answer: its posts are held back (not retried) until the rule is saved
  again, a test post succeeds, or its setting holds another URL.
* 5xx, 408, timeouts: the claim is released and Unreachable raised: the host retries the
  message, then poisons it and PoisonLog records the channel's last error.
A worker that dies between the platform's 2xx and the ledger's `sent` leaves the claim to
expire: the post may then go twice, as an email may (docs/guarantees.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from shared.logsafe import clean
from shared.messages import BadMessage, ChannelPost
from shared.notify.channels.compose import test_payload
from shared.notify.channels.transport import Poster, RateLimited, Rejected, Unreachable
from shared.notify.channels.webhooks import WebhookRefused, Webhooks
from shared.notify.rules import Rule
from shared.storage.channel_status import ChannelState
from shared.storage.notify_ledger import NotifyLedger
from shared.storage.queues import ChannelQueue
from shared.storage.rules import RuleRepository

MAX_DEFERRALS = 20
log = logging.getLogger("mssp_hub.notify.channels")


class ChannelStatusStore(Protocol):
    """shared/storage/channel_status.py, or its fake in shared/storage/memory/channels.py."""

    def record(self, rule_id: str, name: str, scope: str, result: str) -> None: ...
    def mark_failing(self, rule_id: str, name: str, scope: str, reason: str,
                     fingerprint: str = "") -> None: ...
    def get(self, rule_id: str, name: str) -> ChannelState | None: ...
    def for_rule(self, rule_id: str) -> list[ChannelState]: ...
    def reset(self, rule_id: str) -> None: ...
    def forget(self, rule_id: str, keep: Collection[str] = ()) -> None: ...


@dataclass
class ChannelStores:
    rules: RuleRepository
    ledger: NotifyLedger
    status: ChannelStatusStore
    queue: ChannelQueue


@dataclass(frozen=True)
class TestPost:
    """POST .../channels/{name}/test: posted, or why not (the URL shown masked only)."""

    sent: bool
    channel: str
    webhook: str  # masked: https://hooks.slack.com/…/****
    error: str = ""
    retry_after: int | None = None


class ChannelDelivery:
    def __init__(self, stores: ChannelStores, webhooks: Webhooks, poster: Poster,
                 mssp_name: str, portal: str) -> None:
        self.rules, self.ledger = stores.rules, stores.ledger
        self.status, self.queue = stores.status, stores.queue
        self.webhooks, self.poster = webhooks, poster
        self.mssp_name, self.portal = mssp_name, portal

    def post(self, request: ChannelPost) -> str:
        """sent | duplicate | deferred | refused | held back | failing | gone. Raises
        Unreachable (after releasing the claim) or ledger.Busy for the host to retry."""
        rule = self.rules.get(request.scope, request.rule_id)
        channel = _channel(rule, request.channel)
        if rule is None or channel is None:
            return "gone"  # the rule or the channel was removed since: nothing to post
        name, scope = channel["name"], rule.scope
        try:
            webhook = self.webhooks.resolve(channel["type"], channel["webhook_setting"])
        except WebhookRefused as exc:
            self.status.mark_failing(rule.id, name, scope, str(exc))
            log.warning("channel %s/%s not posted: %s", rule.id, clean(name), exc)
            return "failing"
        state = self.status.get(rule.id, name)
        if state is not None and state.failing and state.fingerprint == webhook.fingerprint:
            return "held back"
        claim = self.ledger.claim(rule.id, request.key, {"Tenant": scope, "Channel": name})
        if claim is None:
            return "duplicate"
        try:
            self.poster.post(webhook, request.payload)
        except RateLimited as exc:
            self.ledger.release(rule.id, request.key, claim, str(exc))
            if request.deferrals >= MAX_DEFERRALS:
                self.status.record(rule.id, name, scope, f"error: {exc}, too often")
                raise Unreachable(f"{exc} ({request.deferrals} times)") from None
            self.queue.post(dataclasses.replace(request, deferrals=request.deferrals + 1),
                            delay=exc.retry_after)
            self.status.record(rule.id, name, scope, f"rate limited: {exc}")
            return "deferred"
        except Rejected as exc:
            self.ledger.finish(rule.id, request.key, claim, "refused", str(exc))
            self.status.mark_failing(rule.id, name, scope, str(exc), webhook.fingerprint)
            log.warning("channel %s/%s (%s) refused: %s", rule.id, clean(name),
                        webhook.shown, clean(str(exc)))
            return "refused"
        except Unreachable as exc:
            self.ledger.release(rule.id, request.key, claim, str(exc))
            self.status.record(rule.id, name, scope, f"error: {exc}")
            raise
        self.ledger.finish(rule.id, request.key, claim, "sent")
        self.status.record(rule.id, name, scope, "sent")
        return "sent"

    def test(self, rule: Rule, name: str) -> TestPost | None:
        """A sample alert to one channel, outside the ledger; None if the rule has no such
        channel. Success clears the channel's failing mark, a 4xx sets it."""
        channel = _channel(rule, name)
        if channel is None:
            return None
        name = channel["name"]
        try:
            webhook = self.webhooks.resolve(channel["type"], channel["webhook_setting"])
        except WebhookRefused as exc:
            self.status.mark_failing(rule.id, name, rule.scope, str(exc))
            return TestPost(False, name, "", str(exc))
        payload = test_payload(channel["type"], rule, self.mssp_name, self.portal)
        try:
            self.poster.post(webhook, payload)
        except RateLimited as exc:
            self.status.record(rule.id, name, rule.scope, f"rate limited: {exc}")
            return TestPost(False, name, webhook.shown, str(exc), exc.retry_after)
        except Rejected as exc:
            self.status.mark_failing(rule.id, name, rule.scope, str(exc), webhook.fingerprint)
            return TestPost(False, name, webhook.shown, str(exc))
        except Unreachable as exc:
            self.status.record(rule.id, name, rule.scope, f"error: {exc}")
            return TestPost(False, name, webhook.shown, str(exc))
        self.status.record(rule.id, name, rule.scope, "sent (test post)")
        return TestPost(True, name, webhook.shown)

    def poison_reason(self, body: str) -> str:
        """Why a channel post was given up on: the channel's last result."""
        try:
            request = ChannelPost.parse(body)
        except BadMessage:
            return "channel post failed on every attempt"
        state = self.status.get(request.rule_id, request.channel)
        last = f": {state.result}" if state is not None else ""
        return f"channel post to {request.channel} failed on every attempt{last}"


def _channel(rule: Rule | None, name: str) -> dict[str, str] | None:
    if rule is None:
        return None
    return next((c for c in rule.channels if c["name"].lower() == name.lower()), None)
