"""Notification rules, modelled on Defender's own: per tenant or MSSP-wide. The model and
its validation; they are stored by shared/storage/rules.py."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, ConfigDict, Field, RootModel, StringConstraints

from shared import validation
from shared.model import SEVERITIES, parse_tenant_id  # noqa: F401  (matching imports it here)
from shared.validation import (
    Address,
    FieldError,
    Label,
    Reply,
    Strict,
    ValidationError,
    name,
)

STATUSES = ("New", "InProgress", "Resolved")
GLOBAL = "*"  # the partition of MSSP-wide rules


def _tenant_id(value: str) -> str:
    try:
        return parse_tenant_id(value)
    except ValueError:
        raise ValueError("must be a tenant id (GUID)") from None


@dataclass
class Rule:
    # its JSON schema (RuleView, the API's answers) lists every field as always present
    __pydantic_config__ = ConfigDict(json_schema_serialization_defaults_required=True)

    id: str
    scope: str  # a tenant id, or GLOBAL
    name: str
    recipients: list[dict[str, str]]  # [{"address", "added_at"}]
    enabled: bool = True
    severities: list[str] = field(default_factory=list)  # empty: all
    min_severity: str | None = None  # instead of a set: this one and above
    device_groups: list[str] = field(default_factory=list)  # rbacGroupName; empty: all
    categories: list[str] = field(default_factory=list)
    detection_sources: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    # Graph serviceSource values (microsoftDefenderForEndpoint...); empty: every product
    products: list[str] = field(default_factory=list)
    on_new: bool = True
    on_update: bool = False
    include_org_name: bool = True
    include_portal_link: bool = True
    include_device: bool = True
    tenants: list[str] = field(default_factory=list)  # global rules: only these (empty: all)
    exclude_tenants: list[str] = field(default_factory=list)  # global rules: all but these
    delivery: str = "each"  # each | digest
    digest_minutes: int = 60
    max_per_hour: int | None = None  # emails per hour; the overflow goes to the next digest
    # nothing for a change the MSSP made itself (an event with `by`); rules stored before
    # this option existed read as True, the default
    ignore_own_changes: bool = True
    # Teams and Slack: [{"type": "teams"|"slack", "name", "webhook_setting"}], the setting
    # naming the app setting that holds the webhook URL (never the URL itself)
    channels: list[dict[str, str]] = field(default_factory=list)
    # graph tenants' incidents: off | new | new_or_severity_rise (notify/incidents.py)
    incidents: str = "off"
    # cross-tenant clusters: off | new | new_or_grew (notify/clusters.py); MSSP-wide rules only
    clusters: str = "off"

    def public(self) -> dict[str, Any]:
        return asdict(self)


class RuleView(RootModel[Rule]):
    """A rule as the API answers it: the stored rule, every field."""

    model_config = ConfigDict(frozen=True)


class RuleDeleted(Reply):
    deleted: str = Field(description="the deleted rule's id")


class Refusal(Reply):
    """An address left out of a test email, and why."""

    address: str
    reason: str


class RuleTestSent(Reply):
    """POST .../test: sent (or, with MAIL_TRANSPORT=none, kept in MailOutbox only, which
    `kept_locally` says); either way the email is in MailOutbox, as the outbox shows it."""

    sent: Literal[True]
    to: list[str]
    refused: list[Refusal]
    kept_locally: bool = False


class RuleTestRefused(Reply):
    """POST .../test: no recipient is a valid address; `errors` names each."""

    sent: Literal[False]
    error: str
    errors: list[FieldError]
    to: list[str]
    refused: list[Refusal]


class RuleTestFailed(Reply):
    """POST .../test: the mail server refused or did not answer."""

    sent: Literal[False]
    error: str


class ChannelBody(Strict):
    """A Teams or Slack channel: the app setting holding its webhook URL (a Key Vault
    reference in Azure), never the URL itself."""

    type: Literal["teams", "slack"]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=60, pattern=r"^[\w .-]+$")]
    webhook_setting: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
                               ] = Field(description="the app setting holding the webhook "
                                                     "URL (https on the platform's host)")


class ChannelTestResult(Reply):
    """POST .../rules/{rule_id}/channels/{channel}/test: a sample alert posted to one
    channel (200), or why not (502: the platform refused or did not answer, 422: the
    channel's setting is missing or not a webhook of its platform). `webhook` is shown
    masked (`https://hooks.slack.com/…/****`), never whole."""

    sent: bool
    channel: str
    webhook: str
    error: str = ""
    retry_after: int | None = None


RuleName = name(120)
Severity = Literal["Informational", "Low", "Medium", "High"]
Labels = Annotated[list[Label], Field(max_length=100)]
TenantIds = Annotated[list[Annotated[str, AfterValidator(_tenant_id)]], Field(max_length=1000)]


class RuleBody(Strict):
    """POST and PUT of a rule: what the MSSP chooses (id, scope and when each recipient
    was added are ours)."""

    name: RuleName
    recipients: Annotated[list[Address], Field(max_length=50)]
    enabled: bool = True
    severities: Annotated[list[Severity], Field(max_length=4)] = Field(default_factory=list)
    min_severity: Severity | None = None
    device_groups: Labels = Field(default_factory=list)
    categories: Labels = Field(default_factory=list)
    detection_sources: Labels = Field(default_factory=list)
    statuses: Annotated[list[Literal["New", "InProgress", "Resolved"]],
                        Field(max_length=3)] = Field(default_factory=list)
    products: Labels = Field(
        default_factory=list,
        description="products, as Graph's serviceSource names them (e.g. "
                    "microsoftDefenderForEndpoint, microsoftDefenderForOffice365); "
                    "empty: every product. An alert read from Defender for Endpoint's "
                    "API is microsoftDefenderForEndpoint")
    on_new: bool = True
    on_update: bool = False
    include_org_name: bool = True
    include_portal_link: bool = True
    include_device: bool = True
    tenants: TenantIds = Field(default_factory=list,
                               description="MSSP-wide rules: only these (empty: all)")
    exclude_tenants: TenantIds = Field(default_factory=list,
                                       description="MSSP-wide rules: all but these")
    delivery: Literal["each", "digest"] = "each"
    digest_minutes: Annotated[int, Field(ge=5, le=1440)] = 60
    max_per_hour: Annotated[int, Field(ge=1, le=1000)] | None = None
    ignore_own_changes: bool = Field(
        default=True, description="send nothing for a change the MSSP made itself "
                                  "(an analyst's or the API's action written to Defender)")
    channels: Annotated[list[ChannelBody], Field(max_length=10)] = Field(
        default_factory=list, description="Teams and Slack channels posted to besides the "
                                          "recipients")
    incidents: Literal["off", "new", "new_or_severity_rise"] = Field(
        default="off", description="graph tenants' incidents: email a new incident, or "
                                   "also one whose severity rose (one email per incident "
                                   "version; severities and min_severity apply)")
    clusters: Literal["off", "new", "new_or_grew"] = Field(
        default="off", description="MSSP-wide rules only: email when an indicator is seen "
                                   "at several customers (new), or also when another "
                                   "customer joins (new_or_grew); one email per cluster "
                                   "version. A tenant's rule asking for it is refused: a "
                                   "cluster names other customers")


class Webhooks(Protocol):
    """Resolves a channel's webhook setting (shared/notify/channels/webhooks.py)."""

    def resolve(self, kind: str, setting: str) -> Any: ...


def parse_rule(body: Any, scope: str, existing: Rule | None = None,
               webhooks: Webhooks | None = None) -> Rule:
    """Validate a rule's JSON; every bad field is named. Keeps recipients' added_at.
    `webhooks`: where channels' settings are checked (the API and the portal pass it)."""
    values = validation.check(RuleBody, body).model_dump()
    errors = []
    if not values["recipients"] and not values["channels"]:
        errors.append({"field": "recipients", "message": "a rule needs recipients or channels"})
    names = [c["name"].lower() for c in values["channels"]]
    for i, channel in enumerate(values["channels"]):
        if names.index(channel["name"].lower()) != i:
            errors.append({"field": f"channels.{i}.name", "message": "used twice"})
        if webhooks is not None:
            try:
                webhooks.resolve(channel["type"], channel["webhook_setting"])
            except ValueError as exc:
                errors.append({"field": f"channels.{i}.webhook_setting", "message": str(exc)})
    if values["min_severity"] and values["severities"]:
        errors.append({"field": "min_severity", "message": "give severities or min_severity"})
    if scope != GLOBAL and (values["tenants"] or values["exclude_tenants"]):
        errors.append({"field": "tenants", "message": "only MSSP-wide rules choose tenants"})
    if scope != GLOBAL and values["clusters"] != "off":  # a cluster names other customers
        errors.append({"field": "clusters", "message": "only MSSP-wide rules take clusters"})
    if not values["on_new"] and not values["on_update"] and values["incidents"] == "off" \
            and values["clusters"] == "off":
        errors.append({"field": "on_new", "message": "a rule needs on_new or on_update"})
    if errors:
        raise ValidationError(errors)
    for key in ("severities", "device_groups", "categories", "detection_sources",
                "statuses", "products", "tenants", "exclude_tenants", "recipients"):
        values[key] = list(dict.fromkeys(values[key]))
    # a recipient keeps the time it was first added: it only gets alerts raised after it
    before = {r["address"].lower(): r["added_at"] for r in (existing.recipients
                                                            if existing else [])}
    now = datetime.now(UTC).isoformat()
    values["recipients"] = [{"address": a, "added_at": before.get(a.lower(), now)}
                            for a in values["recipients"]]
    return Rule(id=existing.id if existing else uuid.uuid4().hex, scope=scope, **values)


def includes(rule: Rule, tenant_id: str) -> bool:
    """Does an MSSP-wide rule's choice of tenants take this one: only `tenants` if any,
    never `exclude_tenants`."""
    if rule.tenants and tenant_id not in rule.tenants:
        return False
    return tenant_id not in rule.exclude_tenants
