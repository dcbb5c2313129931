"""Posting a message to a webhook, with explicit timeouts. Errors never carry the URL
(requests' own exception texts do, so only their type is kept)."""

from __future__ import annotations

from typing import Any, Protocol

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


class WebhookPoster:
    def __init__(self, ca_bundle: str | None = None) -> None:
        self.session = requests.Session()
        self.verify: str | bool = ca_bundle or True

    def post(self, webhook: Webhook, payload: dict[str, Any]) -> None:
        try:
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
