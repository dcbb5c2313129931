"""The keyed API of triage, without the Functions types: who the caller is (a named
automation key), what it asks (a checked body and headers), and how an outcome answers
(status, headers, reply model). functions/triage.py only moves bytes in and out.

Why a key of its own: a Functions key carries no name the function can read, and the
audit trail must say who acted. MSSP_API_KEYS names each automation key by its SHA-256;
the caller sends the key as `X-Api-Key` besides the function key. The key is never
logged nor stored; its name is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, StringConstraints

from shared import timefmt
from shared.config import ApiKey
from shared.model import parse_tenant_id
from shared.triage import incident_change
from shared.triage.model import (
    MAX_ASSIGNEE,
    MAX_COMMENT,
    STATUSES,
    Actor,
    AuditEntry,
    Change,
)
from shared.triage.service import Applied
from shared.validation import (
    ErrorBody,
    Reply,
    Strict,
    Text,
    Timestamp,
    ValidationError,
    absent,
    check,
    params,
)

MAX_ALERT_ID = 200
MAX_IDEMPOTENCY_KEY = 200
_ALERT_ID = re.compile(r"[A-Za-z0-9_.:=-]{1,200}")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,200}")
# what each outcome answers (a refused tenant: 403; Defender's own refusal: 502)
STATUS = {"done": 200, "conflict": 412, "refused": 403, "throttled": 429, "failed": 502}
OUTCOMES = ("done", "conflict", "refused", "throttled", "failed")


def api_actor(keys: tuple[ApiKey, ...], presented: str | None) -> Actor | None:
    """The named key `presented` is (compared in constant time), or None."""
    if not presented or len(presented) > 1024:
        return None
    digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).hexdigest()
    found = None
    for key in keys:  # every one compared: the time says nothing of which matched
        if hmac.compare_digest(digest, key.sha256):
            found = key.name
    return Actor(id=found, name=found, via="api") if found else None


UNAUTHORIZED = ErrorBody.one("unauthorized", "X-Api-Key",
                             "missing, or not a key named in MSSP_API_KEYS")


class AlertChange(Strict):
    """PATCH /api/tenants/{tenant_id}/alerts/{alert_id}: Defender's fields; those left
    out stay as they are; a comment is added."""

    status: Literal["New", "InProgress", "Resolved"] | None = None
    assignedTo: Annotated[Text, StringConstraints(  # Defender's name
        min_length=1, max_length=MAX_ASSIGNEE)] | None = None
    classification: Literal["TruePositive", "InformationalExpectedActivity",
                            "FalsePositive"] | None = None
    determination: Annotated[Text, StringConstraints(max_length=64)] | None = Field(
        default=None, description="one of the classification's (docs/triage.md)")
    comment: Annotated[Text, StringConstraints(max_length=MAX_COMMENT)] | None = None

    STATUSES: ClassVar[tuple[str, ...]] = STATUSES

    def change(self) -> Change:
        return Change(status=self.status, assigned_to=self.assignedTo,
                      classification=self.classification, determination=self.determination,
                      comment=self.comment)


class IncidentChange(Strict):
    """PATCH /api/tenants/{tenant_id}/incidents/{incident_id}: an incident's fields in
    the hub's spelling (Graph's status active/inProgress/resolved as Active/InProgress/
    Resolved; classification and determination as for alerts); a comment is added."""

    STATUSES: ClassVar[tuple[str, ...]] = incident_change.STATUSES

    status: Literal["Active", "InProgress", "Resolved"] | None = None
    assignedTo: Annotated[Text, StringConstraints(
        min_length=1, max_length=MAX_ASSIGNEE)] | None = None
    classification: Literal["TruePositive", "InformationalExpectedActivity",
                            "FalsePositive"] | None = None
    determination: Annotated[Text, StringConstraints(max_length=64)] | None = Field(
        default=None, description="one of the classification's (docs/triage.md)")
    comment: Annotated[Text, StringConstraints(max_length=MAX_COMMENT)] | None = None

    def change(self) -> Change:
        return Change(status=self.status, assigned_to=self.assignedTo,
                      classification=self.classification, determination=self.determination,
                      comment=self.comment)


class TriageResult(Reply):
    """What came of a change: the outcome, the alert as Defender has it (its answer;
    on a conflict, its current state), and why."""

    outcome: Literal["done", "conflict", "refused", "throttled", "failed"]
    action_id: str = Field(description="the Idempotency-Key as recorded, or a fresh id")
    detail: str
    repeated: bool = Field(description="the action was recorded before: its answer again, "
                                       "Defender not asked")
    alert: dict[str, Any]
    retry_after: int | None = absent("seconds to wait (throttled)")


class IncidentTriageResult(Reply):
    """What came of an incident's change: the outcome, the incident as Graph has it (its
    answer; on a conflict, its current state), and why."""

    outcome: Literal["done", "conflict", "refused", "throttled", "failed"]
    action_id: str = Field(description="the Idempotency-Key as recorded, or a fresh id")
    detail: str
    repeated: bool = Field(description="the action was recorded before: its answer again, "
                                       "Graph not asked")
    incident: dict[str, Any]
    retry_after: int | None = absent("seconds to wait (throttled)")


class AuditActor(Reply):
    id: str
    name: str
    via: str


class AuditEntryView(Reply):
    action_id: str
    at: Timestamp
    actor: AuditActor
    tenant_id: str
    alert_id: str
    change: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    outcome: str
    detail: str
    batch_id: str = ""
    incident_id: str | None = absent("the incident acted on (then alert_id is empty)")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryView:
        return cls(action_id=entry.action_id, at=entry.at,
                   actor=AuditActor(id=entry.actor.id, name=entry.actor.name,
                                    via=entry.actor.via),
                   tenant_id=entry.tenant_id, alert_id=entry.alert_id, change=entry.change,
                   before=entry.before, after=entry.after, outcome=entry.outcome,
                   detail=entry.detail, batch_id=entry.batch_id,
                   incident_id=entry.incident_id or None)


class AuditPage(Reply):
    """Audit entries, newest first; `continuation` fetches the next page (same filters)."""

    entries: list[AuditEntryView]
    continuation: str | None = absent("the next page's token; absent on the last page")


class AuditParams(Strict):
    """The query string of GET /api/audit (every value a string, as sent)."""

    tenant: Text = Field(default="", description="a tenant id")
    actor: Annotated[Text, StringConstraints(max_length=1000)] = Field(
        default="", description="an actor's id: object id or API key name")
    outcome: Literal["", "done", "conflict", "refused", "throttled", "failed"] = ""
    since: Text = Field(default="", description="at or after (ISO 8601)")
    until: Text = Field(default="", description="at or before (ISO 8601)")
    limit: Text = Field(default="", description="1 to 200; default 50")
    continuation: Annotated[Text, StringConstraints(max_length=1100)] = ""


def target(tenant_id: str, alert_id: str) -> tuple[str, str]:
    """The route's tenant and alert, checked (ValidationError naming the bad one)."""
    errors = []
    try:
        tenant_id = parse_tenant_id(tenant_id)
    except ValueError:
        errors.append({"field": "tenant_id", "message": "must be a GUID"})
    if not _ALERT_ID.fullmatch(alert_id or ""):
        errors.append({"field": "alert_id", "message": "must be 1-200 letters, digits and "
                                                       "_ . : = -"})
    if errors:
        raise ValidationError(errors)
    return tenant_id, alert_id


def request_of(data: Any, headers: Mapping[str, str], actor: Actor,
               model: type[AlertChange] | type[IncidentChange] = AlertChange
               ) -> tuple[Change, str | None, str]:
    """(the change, the version the caller saw, the action id) of a PATCH of an alert
    (or, `model` IncidentChange, of an incident); the change is validated (a pair no page
    allows names `determination`)."""
    body = check(model, data)
    change = body.change()
    try:
        change.validate(model.STATUSES)
    except ValueError as exc:
        field = getattr(exc, "field", "body")
        raise ValidationError([{"field": field, "message": getattr(exc, "message", str(exc))}]
                              ) from None
    seen = (headers.get("If-Match") or "").strip().strip('"') or None
    if seen is not None:
        try:
            seen = timefmt.normalize(seen)
        except ValueError:
            raise ValidationError([{"field": "If-Match", "message": "must be the version "
                                    "seen: the alert's lastUpdateTime or the incident's "
                                    "lastUpdateDateTime (ISO 8601)"}]) from None
    key = headers.get("Idempotency-Key")
    if key is not None and not _PRINTABLE.fullmatch(key):
        raise ValidationError([{"field": "Idempotency-Key", "message": "must be 1-200 "
                                "printable ASCII characters without spaces"}])
    # namespaced by the caller: one automation's key never answers another's request
    action_id = f"{actor.via}:{actor.id}:{key}" if key else uuid.uuid4().hex
    return change, seen, action_id


def answer(applied: Applied) -> tuple[int, TriageResult, dict[str, str]]:
    """(status, reply, headers) of an outcome."""
    status = STATUS[applied.outcome]
    if applied.outcome == "failed" and applied.detail.startswith("404"):
        status = 404
    headers = {"Retry-After": str(applied.retry_after)} if applied.retry_after else {}
    return status, TriageResult(outcome=applied.outcome,  # type: ignore[arg-type]
                                action_id=applied.entry.action_id, detail=applied.detail,
                                repeated=applied.repeated, alert=applied.alert,
                                retry_after=applied.retry_after), headers


def incident_answer(applied: Applied) -> tuple[int, IncidentTriageResult, dict[str, str]]:
    """(status, reply, headers) of an incident's outcome (`applied.alert`: the incident)."""
    status, reply, headers = answer(applied)
    return status, IncidentTriageResult(
        outcome=reply.outcome, action_id=reply.action_id, detail=reply.detail,
        repeated=reply.repeated, incident=applied.alert,
        retry_after=applied.retry_after), headers


def incident_target(tenant_id: str, incident_id: str) -> tuple[str, str]:
    """The route's tenant and incident, checked (Graph's incident ids are digits; the
    pattern is the alert id's)."""
    try:
        return target(tenant_id, incident_id)
    except ValidationError as exc:
        raise ValidationError([{**e, "field": "incident_id"} if e["field"] == "alert_id"
                               else e for e in exc.errors]) from None


def _time(value: str, name: str, errors: list[dict[str, str]]) -> datetime | None:
    if not value.strip():
        return None
    try:
        return timefmt.to_datetime(timefmt.normalize(value.strip())).astimezone(UTC)
    except ValueError:
        errors.append({"field": name, "message": "must be an ISO 8601 time"})
        return None


def audit_query(given: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of AuditTrail.page from GET /api/audit's query string."""
    p = params(AuditParams, given)
    errors: list[dict[str, str]] = []
    tenant = None
    if p.tenant:
        try:
            tenant = parse_tenant_id(p.tenant)
        except ValueError:
            errors.append({"field": "tenant", "message": "must be a tenant id (GUID)"})
    since, until = _time(p.since, "since", errors), _time(p.until, "until", errors)
    if since and until and until < since:
        errors.append({"field": "until", "message": "is before since"})
    limit = 50
    if p.limit:
        if not (p.limit.isascii() and p.limit.isdigit() and 1 <= int(p.limit) <= 200):
            errors.append({"field": "limit", "message": "must be from 1 to 200"})
        else:
            limit = int(p.limit)
    if errors:
        raise ValidationError(errors)
    return {"tenant_id": tenant, "actor_id": p.actor or None, "outcome": p.outcome or None,
            "since": since, "until": until, "continuation": p.continuation or None,
            "limit": limit}
