"""Small, versioned JSON queue messages, and parsing that says what is wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.model import parse_tenant_id

VERSION = 1


class BadMessage(ValueError):
    """A message no retry can fix; it is recorded with this reason instead of retried."""


def _load(body: bytes | str, expected_type: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("message is not JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("message is not a JSON object")
    if data.get("v") != VERSION:
        raise BadMessage(f"unsupported message version {data.get('v')!r}")
    if data.get("type") != expected_type:
        raise BadMessage(f"expected a {expected_type} message, got {data.get('type')!r}")
    try:
        data["tenant"] = parse_tenant_id(data.get("tenant", ""))
    except ValueError:
        raise BadMessage("tenant is not a GUID") from None
    return data


@dataclass(frozen=True)
class FetchRequest:
    tenant_id: str
    continuation: bool = False
    reason: str = "timer"

    def to_message(self) -> str:
        return json.dumps({"v": VERSION, "type": "fetch", "tenant": self.tenant_id,
                           "continuation": self.continuation, "reason": self.reason})

    @classmethod
    def parse(cls, body: bytes | str) -> FetchRequest:
        data = _load(body, "fetch")
        return cls(data["tenant"], bool(data.get("continuation")), str(data.get("reason", "")))


@dataclass(frozen=True)
class RelayRequest:
    tenant_id: str

    def to_message(self) -> str:
        return json.dumps({"v": VERSION, "type": "relay", "tenant": self.tenant_id})

    @classmethod
    def parse(cls, body: bytes | str) -> RelayRequest:
        return cls(_load(body, "relay")["tenant"])


def tenant_of(body: bytes | str) -> str | None:
    """Best effort: the tenant a (possibly broken) message was about."""
    try:
        data = json.loads(body)
        return parse_tenant_id(data.get("tenant", "")) if isinstance(data, dict) else None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
