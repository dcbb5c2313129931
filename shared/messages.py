"""Every queue's message, in one place: a frozen model per message type, with its type tag
and version, `parse` (raising BadMessage with a reason that names the field) and
`dump`/`to_message` (the wire object and its text).

The wire format is what producers wrote before these models existed, byte for byte, so
messages already queued keep working: `{"v": 1, "type": ..., <fields>}` as JSON text
(base64-wrapped by the queue clients, which is transport, not format). Fetch, relay and
deliver messages are `json.dumps` text; alert events are compact orjson text (`shared.codec`),
measured once by ingest to fit the queue's 64 KB and copied from the outbox by the relay.

Frozen dataclasses, not pydantic: ingest builds up to four AlertEvents per new or changed
alert (shrinking the summary until the message fits) on its hottest path, where a plain
dataclass costs nothing beyond the dict it dumps; parsing checks a few fields by hand,
with reasons a poison record can show.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from shared import codec
from shared.model import SEVERITIES, parse_tenant_id

VERSION = 1
_MISSING: Any = object()
_KINDS: dict[type, str] = {str: "a string", bool: "a boolean", dict: "a JSON object",
                           list: "a JSON array"}
T = TypeVar("T")


class BadMessage(ValueError):
    """A message no retry can fix; it is recorded with this reason instead of retried."""


# parsing helpers --------------------------------------------------------------------------
def _load(body: bytes | str, expected_type: str) -> dict[str, Any]:
    """The message object, once it is JSON, an object, version 1 and of the expected type."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("message is not JSON") from None
    return _checked(data, expected_type)


def _checked(data: Any, expected_type: str) -> dict[str, Any]:
    """`data` once it is an object of version 1 and of the expected type."""
    if not isinstance(data, dict):
        raise BadMessage("message is not a JSON object")
    if data.get("v") != VERSION:
        raise BadMessage(f"unsupported message version v={data.get('v')!r}")
    if data.get("type") != expected_type:
        raise BadMessage(f"type={data.get('type')!r}, expected {expected_type!r}")
    return data


def _field(data: dict[str, Any], name: str, kind: type[T], default: Any = _MISSING) -> T:
    value = data.get(name, default)
    if value is _MISSING:
        raise BadMessage(f"{name} is missing")
    if not isinstance(value, kind):
        raise BadMessage(f"{name} is not {_KINDS[kind]}")
    return value


def _tenant(data: dict[str, Any]) -> str:
    """The tenant GUID, normalized as Entra writes it."""
    try:
        return parse_tenant_id(data.get("tenant", ""))
    except ValueError:
        raise BadMessage("tenant is not a GUID") from None


def tenant_of(body: bytes | str) -> str | None:
    """Best effort: the tenant a (possibly broken) message was about."""
    try:
        data = json.loads(body)
        return parse_tenant_id(data.get("tenant", "")) if isinstance(data, dict) else None
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None


# fetch-requests ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TenantSeen:
    """The tenant as the fan-out read it, so an idle fetch need not read it again: what
    the worker uses of it, and the row's etag (its health write is made only if the row
    is unchanged since; otherwise, and before any other write, the worker reads it)."""

    display_name: str
    region: str
    failures: int
    etag: str
    consent_app: str = "read"  # whose token the fetch takes (Tenant.consent_app)
    source: str = "mde"  # which API the fetch reads (Tenant.source)

    def dump(self) -> dict[str, Any]:
        data = {"name": self.display_name, "region": self.region,
                "failures": self.failures, "etag": self.etag}
        if self.consent_app != "read":  # older messages carry none: "read"
            data["app"] = self.consent_app
        if self.source != "mde":  # older messages carry none: "mde"
            data["source"] = self.source
        return data

    @classmethod
    def parse(cls, data: dict[str, Any]) -> TenantSeen:
        failures = data.get("failures", 0)
        if not isinstance(failures, int) or isinstance(failures, bool):
            raise BadMessage("seen.failures is not a number")
        app = _field(data, "app", str, "read")
        if app not in ("read", "triage"):
            raise BadMessage("seen.app is neither read nor triage")
        source = _field(data, "source", str, "mde")
        if source not in ("mde", "graph"):
            raise BadMessage("seen.source is neither mde nor graph")
        return cls(_field(data, "name", str), _field(data, "region", str, ""), failures,
                   _field(data, "etag", str), app, source)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """Fetch a tenant's new alerts (fan-out timer, or a run continuing itself)."""

    TYPE: ClassVar[str] = "fetch"
    tenant_id: str
    continuation: bool = False
    reason: str = "timer"  # timer | budget | continue
    seen: TenantSeen | None = None  # the fan-out's; without it the worker reads the tenant

    def dump(self) -> dict[str, Any]:
        data = {"v": VERSION, "type": self.TYPE, "tenant": self.tenant_id,
                "continuation": self.continuation, "reason": self.reason}
        if self.seen is not None:
            data["seen"] = self.seen.dump()
        return data

    def to_message(self) -> str:
        return json.dumps(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> FetchRequest:
        data = _load(body, cls.TYPE)
        seen = data.get("seen")
        # all optional, as ever; a missing reason was always read as ""
        return cls(_tenant(data), _field(data, "continuation", bool, False),
                   _field(data, "reason", str, ""),
                   TenantSeen.parse(_field(data, "seen", dict)) if seen is not None else None)


# relay-requests ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RelayRequest:
    """Send a tenant's committed outbox rows on to the notify and SIEM queues."""

    TYPE: ClassVar[str] = "relay"
    tenant_id: str

    def dump(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.TYPE, "tenant": self.tenant_id}

    def to_message(self) -> str:
        return json.dumps(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> RelayRequest:
        return cls(_tenant(_load(body, cls.TYPE)))


# notify and SIEM queues: alert events -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A new or changed alert version, for the notify and SIEM consumers."""

    TYPE: ClassVar[str] = "alert"
    tenant_id: str
    tenant_name: str
    alert_id: str
    version: str  # the alert's lastUpdateTime
    change: str  # new | updated
    changed: dict[str, list[Any]]  # field -> [old, new] for updates
    alert: dict[str, Any]  # a summary that fits in a queue message
    event_id: str = ""  # the same for every copy of this event: consumers dedupe on it
    # who made the change, when the MSSP made it itself ({"id", "name", "via"}); absent
    # (None) for the customer's changes and in messages written before it existed
    by: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(self, "event_id",
                               f"{self.tenant_id}:{self.alert_id}:{self.version}")

    def dump(self) -> dict[str, Any]:
        data = {"v": VERSION, "type": self.TYPE, "event_id": self.event_id,
                "tenant": self.tenant_id, "tenant_name": self.tenant_name,
                "alert_id": self.alert_id, "version": self.version, "change": self.change,
                "changed": self.changed, "alert": self.alert}
        if self.by is not None:  # only when set: other events stay as they were
            data["by"] = self.by
        return data

    def to_bytes(self) -> bytes:
        """The message as ingest measures and stores it (compact UTF-8 JSON)."""
        return codec.dumps(self.dump())

    def to_message(self) -> str:
        return codec.dumps_text(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> AlertEvent:
        return cls.from_data(_load(body, cls.TYPE))

    @classmethod
    def from_data(cls, data: Any) -> AlertEvent:
        """From the message's object (parsed JSON), as `parse` reads it."""
        data = _checked(data, cls.TYPE)
        return cls(tenant_id=_tenant(data), tenant_name=_field(data, "tenant_name", str),
                   alert_id=_field(data, "alert_id", str), version=_field(data, "version", str),
                   change=_field(data, "change", str), changed=_field(data, "changed", dict),
                   alert=_field(data, "alert", dict), event_id=_field(data, "event_id", str),
                   by=_by(data))


def _by(data: dict[str, Any]) -> dict[str, str] | None:
    """An event's optional `by`: an object of strings (id, name, via), or absent."""
    by = data.get("by")
    if by is None:
        return None
    if not isinstance(by, dict) or not isinstance(by.get("id"), str) or not all(
            isinstance(v, str) for v in by.values()):
        raise BadMessage("by is not an object of strings with an id")
    return {k: by[k] for k in ("id", "name", "via") if k in by}


def relay_text(stored: dict[str, Any]) -> str:
    """The queue text of an alert event as the outbox keeps it (an `AlertEvent.dump()`,
    unpacked): the same text `to_message` makes, without parsing it again, since the relay
    only copies what ingest built and measured."""
    return codec.dumps_text(stored)


MAX_BATCH_BYTES = 40_000  # UTF-8 bytes of a batch's text: base64 makes ~53 KB of 64 KB


@dataclass(frozen=True, slots=True)
class AlertBatch:
    """Alert events of one tenant in one queue message, in order.

    Why: a message per event cost, on each of the two queues, a put, a delete and a share
    of a get per event: 4 of the ~10 storage transactions an alert cost over the whole
    path (bench/transactions.py). The relay packs an outbox chunk's events into as few
    messages as fit (`batch_texts`); consumers take each event as they took a lone one,
    deduplicating on its event id, so a batch redelivered is as harmless as an event."""

    TYPE: ClassVar[str] = "alerts"
    tenant_id: str
    events: tuple[AlertEvent, ...]

    def dump(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.TYPE, "tenant": self.tenant_id,
                "events": [e.dump() for e in self.events]}

    def to_message(self) -> str:
        return codec.dumps_text(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> AlertBatch:
        data = _load(body, cls.TYPE)
        items = _field(data, "events", list)
        if not items:
            raise BadMessage("events is empty")
        return cls(_tenant(data), tuple(AlertEvent.from_data(item) for item in items))


def batch_texts(texts: list[str], limit: int = MAX_BATCH_BYTES) -> list[str]:
    """The texts of alert events (`relay_text`, of one tenant) packed in order into as few
    queue messages as fit `limit`; an event that travels alone stays an `alert` message."""
    sized = [(text, len(text.encode())) for text in texts]
    out: list[str] = []
    part: list[str] = []
    size = 0
    for text, length in sized:
        if part and size + length + 1 > limit:
            out.append(_batch(part))
            part, size = [], 0
        part.append(text)
        size += length + 1
    if part:
        out.append(_batch(part))
    return out


def _batch(texts: list[str]) -> str:
    if len(texts) == 1:
        return texts[0]
    tenant = json.loads(texts[0])["tenant"]
    return (f'{{"v":{VERSION},"type":"{AlertBatch.TYPE}","tenant":{json.dumps(tenant)},'
            f'"events":[{",".join(texts)}]}}')


def alert_events(body: bytes | str) -> list[AlertEvent]:
    """The events of a notify or SIEM queue message: one `alert`, or an `alerts` batch."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("message is not JSON") from None
    if isinstance(data, dict) and data.get("type") == AlertBatch.TYPE:
        return list(AlertBatch.parse(body).events)
    return [AlertEvent.from_data(data)]


# notify and SIEM queues: incident events ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class IncidentEvent:
    """A new or changed version of a graph tenant's incident (one per version), for the
    notify and SIEM consumers, which dedupe on `event_id` like alert events'."""

    TYPE: ClassVar[str] = "incident"
    tenant_id: str
    tenant_name: str
    incident_id: str
    version: str  # the incident's lastUpdateDateTime (normalized)
    change: str  # new | updated
    changed: dict[str, list[Any]]  # field -> [old, new] for updates
    incident: dict[str, Any]  # name, severity, status, ... (shared/ingest/incident_fetch.py)
    previous: str = ""  # the version this one replaces ("" for a new incident)
    event_id: str = ""
    by: dict[str, str] | None = None  # who made the change: the MSSP's own (triage)

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(self, "event_id",
                               f"{self.tenant_id}:incident:{self.incident_id}:{self.version}")

    def dump(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.TYPE, "event_id": self.event_id,
                "tenant": self.tenant_id, "tenant_name": self.tenant_name,
                "incident_id": self.incident_id, "version": self.version,
                "change": self.change, "changed": self.changed, "incident": self.incident,
                "previous": self.previous, **({"by": self.by} if self.by else {})}

    def to_message(self) -> str:
        return codec.dumps_text(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> IncidentEvent:
        return cls.from_data(_load(body, cls.TYPE))

    @classmethod
    def from_data(cls, data: Any) -> IncidentEvent:
        data = _checked(data, cls.TYPE)
        change = _field(data, "change", str)
        if change not in ("new", "updated"):
            raise BadMessage("change is neither new nor updated")
        return cls(tenant_id=_tenant(data), tenant_name=_field(data, "tenant_name", str),
                   incident_id=_field(data, "incident_id", str),
                   version=_field(data, "version", str), change=change,
                   changed=_field(data, "changed", dict),
                   incident=_field(data, "incident", dict),
                   previous=_field(data, "previous", str, ""),
                   event_id=_field(data, "event_id", str),
                   by=_by(data))


# notify and SIEM queues: cross-tenant cluster events (shared/correlation/) -----------------
@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """An indicator became a cross-tenant cluster (`change="new"`, version 1) or a tenant
    joined it (`"grew"`): one event per cluster version, deduped downstream on `event_id`.
    MSSP-only: only MSSP-wide rules and the MSSP's SIEM see it."""

    TYPE: ClassVar[str] = "cluster"
    indicator_kind: str  # shared/correlation/model.py KINDS
    indicator: str  # the normalised value (attacker-controlled text)
    key: str  # Indicator.key
    version: int
    change: str  # new | grew
    # [{"id", "name", "alerts"?}], every tenant in the cluster ("alerts": its alert count)
    tenants: list[dict[str, Any]]
    joined: list[dict[str, Any]]  # the tenants this version added
    first_seen: str
    last_seen: str
    alert_count: int
    severities: dict[str, int]  # severity -> alerts
    event_id: str = ""

    def __post_init__(self) -> None:
        if not self.event_id:
            object.__setattr__(self, "event_id", f"cluster:{self.key}:{self.version}")

    @property
    def highest_severity(self) -> str | None:
        return highest_severity(self.severities)

    def dump(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.TYPE, "event_id": self.event_id,
                "indicator_kind": self.indicator_kind, "indicator": self.indicator,
                "key": self.key, "version": self.version, "change": self.change,
                "tenants": self.tenants, "joined": self.joined,
                "first_seen": self.first_seen, "last_seen": self.last_seen,
                "alert_count": self.alert_count, "severities": self.severities}

    def to_message(self) -> str:
        return codec.dumps_text(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> ClusterEvent:
        return cls.from_data(_load(body, cls.TYPE))

    @classmethod
    def from_data(cls, data: Any) -> ClusterEvent:
        data = _checked(data, cls.TYPE)
        change = _field(data, "change", str)
        if change not in ("new", "grew"):
            raise BadMessage("change is neither new nor grew")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise BadMessage("version is not a positive integer")
        count = data.get("alert_count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise BadMessage("alert_count is not a count")
        return cls(indicator_kind=_field(data, "indicator_kind", str),
                   indicator=_field(data, "indicator", str), key=_field(data, "key", str),
                   version=version, change=change,
                   tenants=_tenant_list(data, "tenants"), joined=_tenant_list(data, "joined"),
                   first_seen=_field(data, "first_seen", str),
                   last_seen=_field(data, "last_seen", str), alert_count=count,
                   severities=_field(data, "severities", dict),
                   event_id=_field(data, "event_id", str))


def highest_severity(counts: Any) -> str | None:
    """A cluster's highest severity (severity -> alerts), as Defender spells it ("high" ->
    "High"); None when none is known (UnSpecified)."""
    found = {str(s).capitalize() for s, n in dict(counts or {}).items() if n}
    return next((s for s in reversed(SEVERITIES) if s in found), None)


def _tenant_list(data: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Tenants as {"id", "name"}, with "alerts" (the tenant's alert count) when given."""
    items = _field(data, name, list)
    if not all(isinstance(i, dict) and isinstance(i.get("id"), str)
               and isinstance(i.get("name", ""), str) for i in items):
        raise BadMessage(f"{name} is not a list of tenants with an id")
    return [{"id": i["id"], "name": i.get("name", ""),
             **({"alerts": i["alerts"]} if _count(i.get("alerts")) else {})} for i in items]


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def queue_events(body: bytes | str) -> list[AlertEvent | IncidentEvent | ClusterEvent]:
    """The events of a notify or SIEM queue message: alert events (`alert_events`), one
    incident event or one cluster event."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadMessage("message is not JSON") from None
    if isinstance(data, dict) and data.get("type") == IncidentEvent.TYPE:
        return [IncidentEvent.from_data(data)]
    if isinstance(data, dict) and data.get("type") == ClusterEvent.TYPE:
        return [ClusterEvent.from_data(data)]
    return list(alert_events(body))


# siem-deliver -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeliverRequest:
    """Run one push output's delivery from its feed position."""

    TYPE: ClassVar[str] = "deliver"
    output: str  # the output's name in SIEM_OUTPUTS

    def dump(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.TYPE, "output": self.output}

    def to_message(self) -> str:
        return json.dumps(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> DeliverRequest:
        return cls(_field(_load(body, cls.TYPE), "output", str))


# bulk-triage ------------------------------------------------------------------------------
_JOB_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class BulkTriageRequest:
    """Work on one tenant's part of a bulk triage job (shared/triage/bulk.py): what to
    change and which alerts are in the job's rows, so the message stays this small and a
    copy delivered twice finds the same rows."""

    TYPE: ClassVar[str] = "bulk-triage"
    job_id: str  # 32 lower-case hex digits
    tenant_id: str

    def dump(self) -> dict[str, Any]:
        return {"v": VERSION, "type": self.TYPE, "job": self.job_id,
                "tenant": self.tenant_id}

    def to_message(self) -> str:
        return json.dumps(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> BulkTriageRequest:
        data = _load(body, cls.TYPE)
        job = _field(data, "job", str)
        if not _JOB_ID.fullmatch(job):
            raise BadMessage("job is not a job id (32 hex digits)")
        return cls(job, _tenant(data))


# notify-channels --------------------------------------------------------------------------
_RULE_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class ChannelPost:
    """One post to one channel of a rule (shared/notify/channels/delivery.py): the payload
    rendered already (Teams' card or Slack's blocks, under 28 KB), and the ledger key it
    goes once under. The webhook URL is not in it: it is read from the channel's app
    setting when posting. `deferrals`: how often a 429 put it back."""

    TYPE: ClassVar[str] = "channel-post"
    scope: str  # the rule's partition: a tenant id, or "*"
    rule_id: str  # 32 lower-case hex digits
    channel: str  # the channel's name on the rule
    key: str  # the ledger key: "<event id>|channel:<name>", "digest:<batch>|channel:<name>"
    payload: dict[str, Any]
    deferrals: int = 0

    def dump(self) -> dict[str, Any]:
        data = {"v": VERSION, "type": self.TYPE, "scope": self.scope, "rule": self.rule_id,
                "channel": self.channel, "key": self.key, "payload": self.payload,
                "deferrals": self.deferrals}
        if self.scope != "*":  # a poisoned post is charged to its tenant (tenant_of)
            data["tenant"] = self.scope
        return data

    def to_message(self) -> str:
        return json.dumps(self.dump())

    @classmethod
    def parse(cls, body: bytes | str) -> ChannelPost:
        data = _load(body, cls.TYPE)
        rule = _field(data, "rule", str)
        if not _RULE_ID.fullmatch(rule):
            raise BadMessage("rule is not a rule id (32 hex digits)")
        deferrals = data.get("deferrals", 0)
        if not isinstance(deferrals, int) or isinstance(deferrals, bool) or deferrals < 0:
            raise BadMessage("deferrals is not a count")
        return cls(_field(data, "scope", str), rule, _field(data, "channel", str),
                   _field(data, "key", str), _field(data, "payload", dict), deferrals)


Message = (FetchRequest | RelayRequest | AlertEvent | AlertBatch | DeliverRequest
           | BulkTriageRequest | ChannelPost)
MESSAGE_TYPES: tuple[type[Message], ...] = (FetchRequest, RelayRequest, AlertEvent,
                                            AlertBatch, DeliverRequest, BulkTriageRequest,
                                            ChannelPost)
