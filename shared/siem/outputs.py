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
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

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


def _line(value: Any) -> str:
    if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
        raise ValueError("must be a one-line string")
    return value.strip()


def _whole(low: int, high: int) -> Any:
    """A whole number in range (JSON's true and 5.0 are not)."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value
    return Annotated[int, PlainValidator(check)]


def _one_of(*allowed: str, message: str = "") -> Any:
    def check(value: Any) -> str:
        value = _line(value)
        if value not in allowed:
            raise ValueError(message or f"must be one of {', '.join(allowed)}")
        return value
    return Annotated[str, PlainValidator(check)]


def _name(value: Any) -> str:
    value = _line(value)
    if not _NAME.match(value):
        raise ValueError("must be 1-40 lowercase letters, digits or '-'")
    return value


def _severity(value: Any) -> str | None:
    if value is not None and value not in SEVERITIES:
        raise ValueError(f"must be one of {', '.join(SEVERITIES)}")
    return value


def _tenants(value: Any) -> frozenset[str]:
    try:
        return frozenset(parse_tenant_id(t) for t in value)
    except (ValueError, TypeError, AttributeError):
        raise ValueError("must be a list of tenant ids (GUIDs)") from None


def _file(value: Any) -> str:
    value = _line(value)
    if value and not os.path.isfile(value):
        raise ValueError("is not a readable file")
    return value


def _required(value: Any) -> str:
    value = _line(value)
    if not value:
        raise ValueError("is required")
    return value


def _url(value: Any) -> str:
    url = _line(value)
    local = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/", url + "/")
    if not (url.startswith("https://") or local):
        raise ValueError("must be an https:// URL (http only to loopback)")
    return url


def _secret_name(value: Any) -> str:
    value = _line(value)
    if not _SECRET_NAME.match(value):
        raise ValueError("must name an app setting starting SIEM_")
    return value


def _channel(value: Any) -> str:
    value = _line(value)
    try:
        return str(uuid.UUID(value)) if value else ""
    except ValueError:
        raise ValueError("must be a GUID") from None


Line = Annotated[str, PlainValidator(_line)]


class _Common(BaseModel):
    """What every output has: a name, where it goes, what it takes, how it is sent."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # unknown keys: checked before

    name: Annotated[str, PlainValidator(_name)]
    type: Line
    min_severity: Annotated[str | None, PlainValidator(_severity)] = None
    tenants: Annotated[frozenset[str], PlainValidator(_tenants)] = frozenset()
    ca_file: Annotated[str, PlainValidator(_file)] = ""
    timeout_seconds: _whole(1, 60) = 10  # type: ignore[valid-type]
    batch_size: _whole(1, 1000) = 100  # type: ignore[valid-type]

    @model_validator(mode="before")
    @classmethod
    def _checked_when_absent(cls, data: Any) -> Any:
        """A missing name (or host, or URL) is refused with the bad one's message."""
        return {"name": "", **cls.ABSENT, **data} if isinstance(data, dict) else data

    ABSENT: ClassVar[dict[str, str]] = {}


class _Syslog(_Common):
    format: _one_of(*FORMATS["syslog"]) = FORMATS["syslog"][0]  # type: ignore[valid-type]
    host: Annotated[str, PlainValidator(_required)] = ""
    protocol: _one_of("tcp", "tls", "udp",  # type: ignore[valid-type]
                      message="must be tcp, tls or udp") = "tcp"
    port: _whole(1, 65535) = 0  # type: ignore[valid-type]  (0: the protocol's own)
    facility: _whole(0, 23) = 16  # type: ignore[valid-type]
    app_name: Line = "mssp-hub"

    ABSENT: ClassVar[dict[str, str]] = {"host": ""}


class _Http(_Common):
    url: Annotated[str, PlainValidator(_url)] = ""
    secret_setting: Annotated[str, PlainValidator(_secret_name)]
    channel: Annotated[str, PlainValidator(_channel)] = ""
    sourcetype: Line = "mssp-hub:defender:alert"
    index: Line = ""


class _SplunkHec(_Http):
    format: _one_of(*FORMATS["splunk_hec"]) = FORMATS["splunk_hec"][0]  # type: ignore[valid-type]

    ABSENT: ClassVar[dict[str, str]] = {"url": "", "secret_setting": DEFAULT_SECRET["splunk_hec"]}


class _Webhook(_Http):
    format: _one_of(*FORMATS["webhook"]) = FORMATS["webhook"][0]  # type: ignore[valid-type]

    ABSENT: ClassVar[dict[str, str]] = {"url": "", "secret_setting": DEFAULT_SECRET["webhook"]}


def _kind(data: Any) -> str | None:
    kind = data.get("type") if isinstance(data, dict) else None
    return kind.strip() if isinstance(kind, str) else None


_OUTPUT = TypeAdapter(Annotated[
    Annotated[_Syslog, Tag("syslog")] | Annotated[_SplunkHec, Tag("splunk_hec")]
    | Annotated[_Webhook, Tag("webhook")],
    Discriminator(_kind, custom_error_type="type",
                  custom_error_message=f"must be one of {', '.join(TYPES)}")])
_KNOWN = set().union(*(m.model_fields for m in (_Syslog, _SplunkHec, _Webhook)))


def _first_error(exc: ValidationError, where: str) -> SettingsError:
    """The first problem, named as SIEM_OUTPUTS[n].field."""
    error = exc.errors(include_url=False)[0]
    loc = [str(part) for part in error["loc"] if part not in TYPES]
    if error["type"] == "type":  # the union's tag
        return _fail(f"{where}.type", error["msg"])
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" else (
        "is required" if error["type"] == "missing" else error["msg"])
    return _fail(where + "".join(f".{part}" for part in loc), message)


def parse_output(raw: Any, n: int, env: Mapping[str, str]) -> Output:
    """One output of SIEM_OUTPUTS, validated by its type's model, with its secret read
    from the app setting it names."""
    where = f"[{n}]"
    if not isinstance(raw, dict):
        raise _fail(where, "must be a JSON object")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise _fail(where, f"unknown keys: {', '.join(sorted(unknown))}")
    try:
        model = _OUTPUT.validate_python(raw)
    except ValidationError as exc:
        raise _first_error(exc, where) from None
    values = model.model_dump()
    if isinstance(model, _Syslog):
        port = model.port or (6514 if model.protocol == "tls" else 514)
        return Output(**{**values, "port": port,
                         "app_name": model.app_name[:48] or "mssp-hub"})
    secret_name = values.pop("secret_setting")
    secret = env.get(secret_name, "").strip()
    if len(secret) < (16 if model.type == "webhook" else 1):
        raise SettingsError(secret_name, f"is required by SIEM_OUTPUTS{where} ({model.name})"
                            + (" and must be at least 16 characters"
                               if model.type == "webhook" else ""))
    return Output(**values, secret=secret)


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
