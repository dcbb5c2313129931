"""The pull API's query: filters from the query string, and an opaque continuation token.

The token is the feed position plus a fingerprint of the filters it was issued for, so a
SIEM that polls with the token it was last given sees every alert version once, and a
token reused with other filters is refused rather than silently skipping alerts.

`product` (Graph's serviceSource, as rules take it) and `type` (alert | incident | cluster) are not
columns of the feed's entries (entries written before them would not have them): they
select among the entries read, and a page reads on (at most MAX_READS reads) until it is
full or the feed has no more. The token is the place after the last entry read, matched
or not, so paging stays exact; a page may come back short with `more` true.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import ConfigDict, Field, StringConstraints, WithJsonSchema

from shared import timefmt, validation
from shared.alerts.spelling import MDE_SOURCE, PRODUCTS
from shared.alerts.view import event_alert
from shared.model import SEVERITIES, parse_tenant_id
from shared.siem.cluster_formats import cluster_document, is_cluster
from shared.siem.feed import HOUR, Feed, Filters, Page, Position
from shared.validation import Reply, Strict, Text, ValidationError

STATUSES = ("Unknown", "New", "InProgress", "Resolved")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 200
TYPES = ("alert", "incident", "cluster")
MAX_READS = 10  # feed reads a selective page (product, type) makes before it answers
# times a query may name: the feed moves positions by hours and days from them
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    """What the feed's columns cannot filter: each entry read is checked."""

    products: tuple[str, ...] = ()  # Graph serviceSource values
    types: tuple[str, ...] = ()  # alert, incident, cluster

    def __bool__(self) -> bool:
        return bool(self.products or self.types)

    def selects(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("type") if event.get("type") in ("incident", "cluster") else "alert"
        if self.types and kind not in self.types:
            return False
        if not self.products:
            return True
        if kind != "alert":  # an incident or cluster spans products: no product filter takes it
            return False
        alert = event.get("alert") if isinstance(event.get("alert"), dict) else {}
        return (alert.get("serviceSource") or MDE_SOURCE) in self.products


@dataclass(frozen=True)
class PullQuery:
    filters: Filters
    limit: int
    position: Position | None  # None: start from `since` or the retention start
    ndjson: bool
    selection: Selection = Selection()

    def fingerprint(self) -> str:
        data = asdict(self.filters)
        if self.selection:  # only then: tokens issued before these filters stay valid
            data |= asdict(self.selection)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class PullParams(Strict):
    """The query string of GET /api/siem/alerts (every value a string, as sent)."""

    tenant: Text = Field(default="", description="tenant ids, comma-separated")
    severity: Text = Field(default="", description="UnSpecified, Informational, Low, "
                                                    "Medium, High; comma-separated")
    status: Text = Field(default="", description="Unknown, New, InProgress, Resolved; "
                                                 "comma-separated")
    product: Text = Field(default="", description="Graph serviceSource values (as rules "
                                                  "take them: microsoftDefenderForEndpoint, "
                                                  "microsoftDefenderForOffice365, ...); "
                                                  "comma-separated; alerts only")
    type: Text = Field(default="", description="alert, incident or cluster; comma-separated")
    since: Text = Field(default="", description="lastUpdateTime at or after (ISO 8601, "
                                                f"UTC, {EARLIEST.year}-{LATEST.year})")
    until: Text = Field(default="", description="lastUpdateTime at or before")
    limit: Text = Field(default="", description=f"1 to {MAX_LIMIT}; default {DEFAULT_LIMIT}")
    format: Literal["", "json", "ndjson"] = ""
    continuation: Annotated[Text, StringConstraints(max_length=2048)] = Field(
        default="", description="the token of the previous answer, with the same filters")


def _list(value: str, name: str, allowed: tuple[str, ...] | None,
          errors: list[dict[str, str]]) -> tuple[str, ...]:
    raw = [v.strip() for v in value.split(",") if v.strip()]
    out = []
    for one in raw:
        if name == "tenant":
            try:
                out.append(parse_tenant_id(one))
            except ValueError:
                errors.append({"field": name, "message": "must be tenant ids (GUIDs)"})
                return ()
        elif allowed and one not in allowed:
            errors.append({"field": name, "message": f"each one of {', '.join(allowed)}"})
            return ()
        else:
            out.append(one)
    return tuple(sorted(set(out)))


def _time(value: str, name: str, errors: list[dict[str, str]]) -> str:
    """A normalized time that is a real date within range (feed arithmetic never
    overflows), or "" with the error."""
    value = value.strip()
    if not value:
        return ""
    try:
        normal = timefmt.normalize(value)
        if not EARLIEST <= timefmt.to_datetime(normal) <= LATEST:
            raise ValueError
    except ValueError:
        errors.append({"field": name, "message": "must be an ISO 8601 UTC time from "
                                                 f"{EARLIEST.year} to {LATEST.year}"})
        return ""
    return normal


def parse_query(given: Mapping[str, str], accept: str = "") -> PullQuery:
    params = validation.params(PullParams, given)
    errors: list[dict[str, str]] = []
    filters = Filters(tenants=_list(params.tenant, "tenant", None, errors),
                      severities=_list(params.severity, "severity",
                                       ("UnSpecified", *SEVERITIES), errors),
                      statuses=_list(params.status, "status", STATUSES, errors),
                      since=_time(params.since, "since", errors),
                      until=_time(params.until, "until", errors))
    selection = Selection(products=_list(params.product, "product", tuple(PRODUCTS), errors),
                          types=_list(params.type, "type", TYPES, errors))
    if filters.since and filters.until and filters.until < filters.since:
        errors.append({"field": "until", "message": "is before since"})
    limit = int(params.limit) if re.fullmatch("[0-9]{1,4}", params.limit) else DEFAULT_LIMIT
    if params.limit and not (params.limit.isascii() and params.limit.isdigit()
                             and 1 <= limit <= MAX_LIMIT):
        errors.append({"field": "limit", "message": f"must be from 1 to {MAX_LIMIT}"})
    ndjson = params.format == "ndjson" or (not params.format
                                           and "application/x-ndjson" in accept)
    query = PullQuery(filters, limit, None, ndjson, selection)
    if params.continuation and not errors:
        query = PullQuery(filters, limit, decode_token(params.continuation,
                                                       query.fingerprint(), errors), ndjson,
                          selection)
    if errors:
        raise ValidationError(errors)
    return query


def encode_token(position: Position, fingerprint: str) -> str:
    data = json.dumps({"v": 1, "b": position.bucket, "a": position.after, "f": fingerprint},
                      separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_token(token: str, fingerprint: str, errors: list[dict[str, str]]
                 ) -> Position | None:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        datetime.strptime(data["b"], HOUR)
        if data.get("v") != 1 or not isinstance(data["a"], str) or len(data["a"]) > 1100:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error):
        errors.append({"field": "continuation", "message": "is not a token this API issued"})
        return None
    if data.get("f") != fingerprint:
        errors.append({"field": "continuation",
                       "message": "was issued for other filters; repeat the same filters"})
        return None
    return Position(data["b"], data["a"])


class AlertVersion(Reply):
    """One alert version as the pull API returns it: the alert plus its tenant."""

    model_config = ConfigDict(frozen=True, serialize_by_alias=True, validate_by_name=True,
                              validate_by_alias=True)

    event_id: str = Field(description="dedupe key: tenant, alert id and version (a "
                                      "cluster's: cluster:<key>:<version>)")
    tenant_id: Annotated[str | None, WithJsonSchema({
        "anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}],
        "description": "null for a cluster, which spans tenants (`cluster.tenants`)"})]
    tenant_name: str | None
    change: Literal["new", "updated", "grew"] | None = Field(
        description="grew: a cluster another customer joined")
    changed: dict[str, Any] = Field(description="field -> [old, new]")
    version: str | None = Field(description="the alert's lastUpdateTime (a cluster's "
                                            "last sighting)")
    by: dict[str, str] | None = Field(
        default=None, description="who made this change when the MSSP made it itself "
                                  "(id, name, via: entra, key or api); null otherwise")
    feed_time: str | None
    # `schema` in JSON (the attribute name would shadow BaseModel.schema)
    alert_schema: str = Field(
        default="mde", alias="schema", description="the API the alert came from: mde (Defender for "
                                   "Endpoint's /api/alerts) or graph (Microsoft Graph "
                                   "security alerts_v2); `alert` is in its field names "
                                   "when complete")
    product: str = Field(default="Microsoft Defender for Endpoint",
                         description="the product that raised the alert")
    alert_complete: bool = Field(description="false: `alert` is the summary (the alert "
                                             "changed again, or is too large to copy)")
    alert: dict[str, Any] = Field(description="the alert as its API (`schema`) returned it, "
                                              "evidence included ({} for an incident)")
    type: Literal["alert", "incident", "cluster"] = Field(
        default="alert", description="incident: a graph tenant's incident version "
                                     "(`incident`), not an alert's; cluster: an "
                                     "indicator seen at several customers (`cluster`)")
    incident_id: str | None = Field(default=None, description="the incident's id")
    incident: dict[str, Any] | None = Field(
        default=None, description="the incident version: name, severity, status, assignee, "
                                  "classification, determination, tags, alertIds, times, "
                                  "webUrl")
    cluster: dict[str, Any] | None = Field(
        default=None, description="the cluster version: indicator_kind, indicator, key, "
                                  "version, change (new or grew), reach, tenants "
                                  "[{id, name, alerts}], joined, first_seen, last_seen, "
                                  "alert_count, severities")


class PullPage(Reply):
    """GET /api/siem/alerts as JSON; the token is also in X-Continuation."""

    items: list[AlertVersion]
    continuation: str
    more: bool = Field(description="true: ask again at once")


def item(event: Mapping[str, Any]) -> AlertVersion:
    """One alert (or incident, or cluster) version as the API returns it."""
    if is_cluster(event):
        found = cluster_document(event)
        return AlertVersion(
            event_id=event["event_id"], tenant_id=None, tenant_name=None,
            change=event.get("change"), changed={}, version=event.get("last_seen"),
            feed_time=event.get("feed_time"), alert_complete=False, schema="mssp-hub",
            product="mssp-hub cross-tenant correlation", alert={}, type="cluster",
            cluster={k: v for k, v in found.items()
                     if k not in ("type", "event_id", "feed_time")})
    if event.get("type") == "incident":
        return AlertVersion(
            event_id=event["event_id"], tenant_id=event["tenant"],
            tenant_name=event.get("tenant_name"), change=event.get("change"),
            changed=event.get("changed") or {}, version=event.get("version"),
            by=event.get("by"), feed_time=event.get("feed_time"), alert_complete=False,
            schema="graph",
            product="Microsoft Defender XDR", alert={}, type="incident",
            incident_id=event.get("incident_id"), incident=event.get("incident") or {})
    _, product, schema = event_alert(event)
    return AlertVersion(
        event_id=event["event_id"], tenant_id=event["tenant"],
        tenant_name=event.get("tenant_name"), change=event.get("change"),
        changed=event.get("changed") or {}, version=event.get("version"),
        by=event.get("by"), feed_time=event.get("feed_time"),
        alert_complete=event.get("alert_complete", False),
        schema=schema, product=product, alert=event["alert"])


def pull(feed: Feed, query: PullQuery) -> tuple[list[AlertVersion], str, bool]:
    """(items, continuation token, more waiting)."""
    since = timefmt.to_datetime(query.filters.since) if query.filters.since else None
    position = query.position or feed.start(since)
    selection = query.selection
    items: list[AlertVersion] = []
    for _ in range(MAX_READS if selection else 1):
        page: Page = feed.read(position, query.limit - len(items), query.filters)
        items.extend(item(e) for e in page.events if not selection or selection.selects(e))
        position = page.position
        if not page.more or len(items) >= query.limit:
            break
    return items, encode_token(position, query.fingerprint()), page.more
