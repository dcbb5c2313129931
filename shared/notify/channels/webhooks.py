"""A channel's webhook URL is a secret: the rule names an app setting (a Key Vault
reference in Azure) and only this module reads its value. The URL is checked against the
platform's hosts (a webhook elsewhere would leak alerts), is never stored in a table,
never logged, and is shown at most as `https://hooks.slack.com/…/****`."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.netloc import is_loopback

SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
TEAMS_SUFFIXES = (".logic.azure.com", ".powerplatform.com")
SLACK_HOSTS = ("hooks.slack.com",)


class WebhookRefused(ValueError):
    """The setting is missing, or its value is not a webhook of the channel's platform."""


@dataclass(frozen=True)
class Webhook:
    url: str  # never logged, stored nor shown: `shown` is

    @property
    def shown(self) -> str:
        return masked(self.url)

    @property
    def fingerprint(self) -> str:
        """Which URL a failure was seen on (a new URL in the setting is worth a try)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


def masked(url: str) -> str:
    """Scheme and host only: `https://hooks.slack.com/…/****`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
    except ValueError:
        return "****"
    return f"{parts.scheme or '?'}://{host}/…/****"


def platform_host(kind: str, host: str) -> bool:
    host = host.lower()
    if kind == "teams":
        return any(host.endswith(s) and len(host) > len(s) for s in TEAMS_SUFFIXES)
    return host in SLACK_HOSTS


class Webhooks:
    """Resolves `webhook_setting` names. `local`: PUBLIC_BASE_URL is loopback (`make run`,
    tests), where a loopback receiver stands in for Teams and Slack, as elsewhere in
    shared/config.py; deployed, only the platforms' own hosts over https."""

    def __init__(self, env: Mapping[str, str], local: bool) -> None:
        self.env, self.local = env, local

    @classmethod
    def from_environ(cls, public_base_url: str) -> Webhooks:
        return cls(os.environ, is_loopback(public_base_url))

    def resolve(self, kind: str, setting: str) -> Webhook:
        """The webhook of a channel, or WebhookRefused saying why (never the value)."""
        if not SETTING_NAME.fullmatch(setting or ""):
            raise WebhookRefused("must name an app setting (letters, digits, _)")
        url = (self.env.get(setting) or "").strip()
        if not url:
            raise WebhookRefused(f"app setting {setting} is not set")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError:
            raise WebhookRefused(f"app setting {setting} does not hold a URL") from None
        if self.local and is_loopback(url):
            return Webhook(url)
        hosts = "hooks.slack.com" if kind == "slack" else "*.logic.azure.com or " \
            "*.powerplatform.com"
        if parts.scheme != "https" or "@" in parts.netloc or not platform_host(
                kind, parts.hostname or ""):
            raise WebhookRefused(f"app setting {setting} must hold an https URL on {hosts}"
                                 f"{' (or loopback, locally)' if self.local else ''}")
        return Webhook(url)
