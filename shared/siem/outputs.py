"""Push destinations from the SIEM_OUTPUTS setting, validated once, each with its filter.

SIEM_OUTPUTS is a JSON list; secrets are not inside it but named: each HEC token or
webhook secret is read from its own app setting (a Key Vault reference in Azure), so the
list itself can be reviewed and logged.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from shared.model import SEVERITIES, parse_tenant_id
from shared.settings_error import SettingsError
from shared.validation import Reply

TYPES = ("syslog", "splunk_hec", "webhook")
FORMATS = {"syslog": ("cef", "ecs"), "splunk_hec": ("json", "ecs"), "webhook": ("json", "ecs")}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_SECRET_NAME = re.compile(r"^SIEM_[A-Z0-9_]{1,60}$")
DEFAULT_SECRET = {"splunk_hec": "SIEM_HEC_TOKEN", "webhook": "SIEM_WEBHOOK_SECRET"}


@dataclass(frozen=True)
class Output:
    """One destination: where, how, which alerts."""

    name: str
    type: str
    format: str
    min_severity: str | None = None
    tenants: frozenset[str] = frozenset()
    batch_size: int = 100
    # syslog
    host: str = ""
    port: int = 0
    protocol: str = "tcp"
    facility: int = 16
    app_name: str = "mssp-hub"
    # HTTP (HEC, webhook)
    url: str = ""
    secret: str = field(default="", repr=False)
    sourcetype: str = "mssp-hub:defender:alert"
    index: str = ""
    channel: str = ""
    ca_file: str = ""
    timeout_seconds: int = 10

    def wants(self, severity: str | None, tenant_id: str) -> bool:
        if self.tenants and tenant_id not in self.tenants:
            return False
        if self.min_severity is None:
            return True
        return severity in SEVERITIES and (
            SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity))

    def severities(self) -> tuple[str, ...] | None:
        """The severities this output takes, for a server-side filter (None: all)."""
        if self.min_severity is None:
            return None
        return SEVERITIES[SEVERITIES.index(self.min_severity):]


class OutputStatus(Reply):
    """An output's position and health (GET /api/siem/outputs)."""

    name: str
    type: Literal["syslog", "splunk_hec", "webhook"]
    format: str
    lag_seconds: int | None = Field(description="how far behind the feed it is")
    failures: int = Field(description="failed runs in a row")
    last_error: str | None
    last_error_at: str | None
    retry_at: str | None
    last_success_at: str | None


class OutputsReport(Reply):
    outputs: list[OutputStatus]


def _fail(where: str, problem: str) -> SettingsError:
    return SettingsError(f"SIEM_OUTPUTS{where}", problem)


def _int(raw: Mapping[str, Any], key: str, where: str, default: int, low: int, high: int
         ) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{where}.{key}", f"must be a whole number from {low} to {high}")
    return value


def _str(raw: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise _fail(f"{where}.{key}", "must be a one-line string")
    return value.strip()


def _url(raw: Mapping[str, Any], where: str) -> str:
    url = _str(raw, "url", where)
    local = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/", url + "/")
    if not (url.startswith("https://") or local):
        raise _fail(f"{where}.url", "must be an https:// URL (http only to loopback)")
    return url


def parse_output(raw: Any, n: int, env: Mapping[str, str]) -> Output:
    where = f"[{n}]"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a JSON object")
    unknown = set(raw) - {f for f in Output.__dataclass_fields__ if f != "secret"} \
        - {"secret_setting"}
    if unknown:
        raise _fail(where, f"unknown keys: {', '.join(sorted(unknown))}")
    name = _str(raw, "name", where)
    if not _NAME.match(name):
        raise _fail(f"{where}.name", "must be 1-40 lowercase letters, digits or '-'")
    kind = _str(raw, "type", where)
    if kind not in TYPES:
        raise _fail(f"{where}.type", f"must be one of {', '.join(TYPES)}")
    fmt = _str(raw, "format", where, FORMATS[kind][0])
    if fmt not in FORMATS[kind]:
        raise _fail(f"{where}.format", f"must be one of {', '.join(FORMATS[kind])}")
    min_sev = raw.get("min_severity")
    if min_sev is not None and min_sev not in SEVERITIES:
        raise _fail(f"{where}.min_severity", f"must be one of {', '.join(SEVERITIES)}")
    tenants = raw.get("tenants", [])
    try:
        tenant_set = frozenset(parse_tenant_id(t) for t in tenants)
    except (ValueError, TypeError, AttributeError):
        raise _fail(f"{where}.tenants", "must be a list of tenant ids (GUIDs)") from None
    ca_file = _str(raw, "ca_file", where)
    if ca_file and not os.path.isfile(ca_file):
        raise _fail(f"{where}.ca_file", "is not a readable file")
    common: dict[str, Any] = {
        "name": name, "type": kind, "format": fmt, "min_severity": min_sev,
        "tenants": tenant_set, "ca_file": ca_file,
        "timeout_seconds": _int(raw, "timeout_seconds", where, 10, 1, 60),
        "batch_size": _int(raw, "batch_size", where, 100, 1, 1000)}
    if kind == "syslog":
        protocol = _str(raw, "protocol", where, "tcp")
        if protocol not in ("tcp", "tls", "udp"):
            raise _fail(f"{where}.protocol", "must be tcp, tls or udp")
        host = _str(raw, "host", where)
        if not host:
            raise _fail(f"{where}.host", "is required")
        return Output(**common, host=host, protocol=protocol,
                      port=_int(raw, "port", where, 6514 if protocol == "tls" else 514,
                                1, 65535),
                      facility=_int(raw, "facility", where, 16, 0, 23),
                      app_name=_str(raw, "app_name", where, "mssp-hub")[:48] or "mssp-hub")
    url = _url(raw, where)
    secret_name = _str(raw, "secret_setting", where, DEFAULT_SECRET[kind])
    if not _SECRET_NAME.match(secret_name):
        raise _fail(f"{where}.secret_setting", "must name an app setting starting SIEM_")
    secret = env.get(secret_name, "").strip()
    if len(secret) < (16 if kind == "webhook" else 1):
        raise SettingsError(secret_name, f"is required by SIEM_OUTPUTS{where} ({name})"
                            + (" and must be at least 16 characters" if kind == "webhook"
                               else ""))
    channel = _str(raw, "channel", where)
    if channel:
        try:
            channel = str(uuid.UUID(channel))
        except ValueError:
            raise _fail(f"{where}.channel", "must be a GUID") from None
    return Output(**common, url=url, secret=secret, channel=channel,
                  sourcetype=_str(raw, "sourcetype", where, "mssp-hub:defender:alert"),
                  index=_str(raw, "index", where))


def parse_outputs(text: str, env: Mapping[str, str]) -> tuple[Output, ...]:
    try:
        raw = json.loads(text or "[]")
    except ValueError:
        raise _fail("", "is not valid JSON") from None
    if not isinstance(raw, list):
        raise _fail("", "must be a JSON list of outputs")
    outputs = tuple(parse_output(item, n, env) for n, item in enumerate(raw))
    names = [o.name for o in outputs]
    if len(set(names)) != len(names):
        raise _fail("", "output names must be unique")
    return outputs
