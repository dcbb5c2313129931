"""Posting a message to a webhook, with explicit timeouts. Errors never carry the URL
(requests' own exception texts do, so only their type is kept), nor does urllib3's DEBUG
line per request (`"POST /services/T/B/<token> HTTP/1.1" 200`): its path is masked."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from shared.notify.channels.webhooks import Webhook

CONNECT_SECONDS, READ_SECONDS = 5.0, 15.0
RETRY_AFTER_DEFAULT, RETRY_AFTER_MAX = 30, 3600


class RateLimited(RuntimeError):
    """429: post again after `retry_after` seconds (the platform's Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"429 rate limited: retry after {retry_after} s")
        self.retry_after = retry_after


class Rejected(RuntimeError):
    """A 4xx other than 408/429: the webhook is gone, disabled or refuses us; posting
    again will not help until someone fixes it."""


class Unreachable(RuntimeError):
    """5xx, 408, a timeout or no connection: may work later."""


class Poster(Protocol):
    def post(self, webhook: Webhook, payload: dict[str, Any]) -> None: ...


def retry_after(value: str | None) -> int:
    """Seconds from a Retry-After header (seconds only; a date or junk: the default)."""
    try:
        seconds = int(str(value).strip())
    except ValueError:
        return RETRY_AFTER_DEFAULT
    return min(max(seconds, 1), RETRY_AFTER_MAX)


_posting = threading.local()  # the webhook this thread is posting to, if any


class _MaskWebhookPath(logging.Filter):
    """On urllib3's logger: a line naming the webhook this thread posts to names it masked
    (Slack's path is its token, Teams' query its signature)."""

    def filter(self, record: logging.LogRecord) -> bool:
        webhook: Webhook | None = getattr(_posting, "webhook", None)
        if webhook is not None:
            parts = urlsplit(webhook.url)
            message = record.getMessage()
            for secret in (f"{parts.path}?{parts.query}", parts.path, parts.query):
                if len(secret) > 1 and secret in message:
                    message = message.replace(secret, "/…/****")
            record.msg, record.args = message, ()
        return True


_URLLIB3 = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _MaskWebhookPath) for f in _URLLIB3.filters):
    _URLLIB3.addFilter(_MaskWebhookPath())


@contextmanager
def _posting_to(webhook: Webhook) -> Iterator[None]:
    _posting.webhook = webhook
    try:
        yield
    finally:
        _posting.webhook = None


class WebhookPoster:
    def __init__(self, ca_bundle: str | None = None) -> None:
        self.session = requests.Session()
        self.verify: str | bool = ca_bundle or True

    def post(self, webhook: Webhook, payload: dict[str, Any]) -> None:
        try:
            with _posting_to(webhook):
                response = self.session.post(webhook.url, json=payload, verify=self.verify,
                                             timeout=(CONNECT_SECONDS, READ_SECONDS),
                                             allow_redirects=False)
        except requests.RequestException as exc:
            raise Unreachable(f"{webhook.shown}: {type(exc).__name__}") from None
        status = response.status_code
        if 200 <= status < 300:
            return
        answer = " ".join(response.text[:200].split()).replace(webhook.url, webhook.shown)
        detail = f"{status} {answer}".strip()
        if status == 429:
            raise RateLimited(retry_after(response.headers.get("Retry-After")))
        if status == 408 or status >= 500:
            raise Unreachable(detail)
        raise Rejected(detail)
