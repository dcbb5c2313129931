"""The local Teams and Slack webhooks (devtools/webhook_receiver.py) for channel tests: a
post it refused for its content (a card or blocks the platform would not take, over its
size limits, not JSON) fails the test; a refusal the test asked for (`answer(...)`:
404, 429) does not."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devtools.webhook_receiver import WebhookReceiver

TOLD = "this hook was told to answer"


def refused_for_content(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """Posts the receiver refused as the platform would (not because it was told to)."""
    return [p for p in receiver.posts() if not p["accepted"]
            and not any(r.startswith(TOLD) for r in p["reasons"])]


def assert_all_valid(receiver: WebhookReceiver) -> None:
    refused = refused_for_content(receiver)
    assert not refused, [(p["platform"], p["hook"], p["status"], p["reasons"][:3])
                         for p in refused]


def taken(receiver: WebhookReceiver, platform: str, hook: str) -> list[dict[str, Any]]:
    """The bodies a hook accepted (2xx), oldest first; asserts none was invalid."""
    assert_all_valid(receiver)
    return [p["body"] for p in receiver.posts(platform, hook) if p["accepted"]]


def shown(node: Any) -> list[str]:
    """Every string a payload shows (not its keys, types or URLs)."""
    if isinstance(node, dict):
        return [t for k, v in node.items() if k not in ("type", "url", "$schema")
                for t in shown(v)]
    if isinstance(node, list):
        return [t for v in node for t in shown(v)]
    return [node] if isinstance(node, str) else []


@contextmanager
def checked_receiver() -> Iterator[WebhookReceiver]:
    """A running receiver; on leaving, every post it took must have been valid (also the
    ones a test did not look at). A test module's `receiver` fixture yields it."""
    found = WebhookReceiver(echo=lambda _line: None).start()
    try:
        yield found
        assert_all_valid(found)
    finally:
        found.stop()
