"""The keyed API of correlation without the Functions types: the query strings and bodies
it takes (checked, every refusal naming its field) and the replies it writes (the OpenAPI
document's schemas come from the same models). functions/clusters.py moves bytes.

MSSP-only like the portal: these answers name many customers' tenants and alerts, so they
sit behind the function key (and a named automation key for changes), never on a
customer's behalf."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from shared import timefmt
from shared.correlation.model import (
    KINDS,
    Cluster,
    Indicator,
    Sighting,
    Suppression,
    TenantReach,
)
from shared.correlation.search import indicator_of
from shared.validation import Reply, Strict, Text, ValidationError, absent, check, name, params

MAX_CURSOR = 1100
MAX_VALUE = 2048
MAX_REASON = 500
KIND = Literal["", "sha256", "sha1", "ip", "domain", "url", "file_name"]
Cursor = Annotated[Text, StringConstraints(max_length=MAX_CURSOR)]
Value = Annotated[Text, StringConstraints(max_length=MAX_VALUE)]


# replies --------------------------------------------------------------------------------
class IndicatorView(Reply):
    kind: str = Field(description="sha256, sha1, ip, domain, url or file_name")
    value: str = Field(description="normalised; attacker-controlled text")
    key: str = Field(description="the indicator's storage key")

    @classmethod
    def of(cls, indicator: Indicator) -> IndicatorView:
        return cls(kind=indicator.kind, value=indicator.value, key=indicator.key)


class TenantReachView(Reply):
    tenant_id: str
    tenant_name: str
    first_seen: str
    last_seen: str
    alert_ids: list[str] = Field(description="newest first; capped (alert_count is all)")
    alert_count: int
    max_severity: str | None = absent()

    @classmethod
    def of(cls, part: TenantReach) -> TenantReachView:
        return cls(tenant_id=part.tenant_id, tenant_name=part.tenant_name,
                   first_seen=part.first_seen, last_seen=part.last_seen,
                   alert_ids=list(part.alert_ids), alert_count=part.alert_count,
                   max_severity=part.max_severity)


class ClusterView(Reply):
    """An indicator seen at several customers within the window."""

    indicator: IndicatorView
    version: int = Field(description="grows by one each time a tenant joins")
    reach: int = Field(description="tenants")
    first_seen: str
    last_seen: str
    alert_count: int
    severities: dict[str, int] = Field(description="alerts per severity")
    tenants: list[TenantReachView]

    @classmethod
    def of(cls, cluster: Cluster) -> ClusterView:
        return cls(indicator=IndicatorView.of(cluster.indicator), version=cluster.version,
                   reach=cluster.reach, first_seen=cluster.first_seen,
                   last_seen=cluster.last_seen, alert_count=cluster.alert_count,
                   severities=dict(cluster.severities),
                   tenants=[TenantReachView.of(t) for t in cluster.tenants])


class ClusterPage(Reply):
    clusters: list[ClusterView]
    cursor: str | None = absent("the next page's cursor (same order); absent on the last")


class SightingView(Reply):
    tenant_id: str
    tenant_name: str
    alert_id: str
    seen_at: str = Field(description="the alert's creation time")
    severity: str | None = absent()
    title: str | None = absent("the alert's title: attacker-controlled text")
    product: str | None = absent()

    @classmethod
    def of(cls, sighting: Sighting) -> SightingView:
        return cls(tenant_id=sighting.tenant_id, tenant_name=sighting.tenant_name,
                   alert_id=sighting.alert_id, seen_at=sighting.seen_at,
                   severity=sighting.severity, title=sighting.title,
                   product=sighting.product)


class LookupPage(Reply):
    """Every tenant and alert that has the indicator, newest first."""

    indicator: IndicatorView
    sightings: list[SightingView]
    cursor: str | None = absent("the next page's cursor; absent on the last")


class SuppressionView(Reply):
    indicator: IndicatorView
    reason: str
    author: str
    created: str

    @classmethod
    def of(cls, suppression: Suppression) -> SuppressionView:
        return cls(indicator=IndicatorView.of(suppression.indicator),
                   reason=suppression.reason, author=suppression.author,
                   created=suppression.created)


class SuppressionList(Reply):
    suppressions: list[SuppressionView]


class SuppressionRemoved(Reply):
    indicator: IndicatorView
    removed: bool = Field(description="false: it was not suppressed")


# requests -------------------------------------------------------------------------------
class NewSuppression(Strict):
    """POST /api/suppressions: an indicator the MSSP declares benign; it forms no cluster
    from then on. Suppressing again keeps the first record."""

    value: Value = Field(description="a hash, IP address, domain, URL or file name")
    kind: KIND = Field(default="", description="detected when empty; file_name must be "
                                               "given")
    reason: name(MAX_REASON) = Field(description="why it is benign")  # type: ignore[valid-type]


class ClustersParams(Strict):
    order: Literal["", "recent", "reach"] = Field(
        default="", description="recent (newest sighting first, the default) or reach")
    cursor: Cursor = ""
    limit: Text = Field(default="", description="1 to 200; default 50")


class IndicatorParams(Strict):
    value: Value = Field(description="a hash, IP address, domain, URL or file name")
    kind: KIND = ""


class LookupParams(IndicatorParams):
    since: Text = Field(default="", description="sightings at or after (ISO 8601)")
    cursor: Cursor = ""
    limit: Text = Field(default="", description="1 to 500; default 100")


def _limit(text: str, top: int, default: int, errors: list[dict[str, str]]) -> int:
    if not text:
        return default
    if text.isascii() and text.isdigit() and 1 <= int(text) <= top:
        return int(text)
    errors.append({"field": "limit", "message": f"must be from 1 to {top}"})
    return default


def _indicator(value: str, kind: str, errors: list[dict[str, str]],
               field: str = "value") -> Indicator | None:
    try:
        return indicator_of(value, kind)
    except ValueError as exc:
        errors.append({"field": field, "message": f"is not an indicator: {exc}"})
        return None


def _raise(errors: list[dict[str, str]]) -> None:
    if errors:
        raise ValidationError(errors)


def clusters_query(given: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of CorrelationReads.clusters from GET /api/clusters."""
    p = params(ClustersParams, given)
    errors: list[dict[str, str]] = []
    limit = _limit(p.limit, 200, 50, errors)
    _raise(errors)
    return {"order": p.order or "recent", "cursor": p.cursor or None, "limit": limit}


def indicator_query(given: Mapping[str, str], kind: str = "") -> Indicator:
    """The indicator of `value` (and `kind`, from the query or the route)."""
    p = params(IndicatorParams, given)
    errors: list[dict[str, str]] = []
    found = _indicator(p.value, kind or p.kind, errors)
    _raise(errors)
    assert found is not None
    return found


def lookup_query(given: Mapping[str, str]) -> tuple[Indicator, dict[str, Any]]:
    """(the indicator, the keyword arguments of CorrelationReads.lookup)."""
    p = params(LookupParams, given)
    errors: list[dict[str, str]] = []
    found = _indicator(p.value, p.kind, errors)
    since = None
    if p.since.strip():
        try:
            since = timefmt.normalize(p.since.strip())
        except ValueError:
            errors.append({"field": "since", "message": "must be an ISO 8601 time"})
    limit = _limit(p.limit, 500, 100, errors)
    _raise(errors)
    assert found is not None
    return found, {"since": since, "cursor": p.cursor or None, "limit": limit}


def new_suppression(data: Any) -> tuple[Indicator, str]:
    """(the indicator, the reason) of a POST /api/suppressions body."""
    body = check(NewSuppression, data)
    errors: list[dict[str, str]] = []
    found = _indicator(body.value, body.kind, errors)
    _raise(errors)
    assert found is not None
    return found, body.reason


def check_kind(kind: str) -> str:
    """A route's kind, or a ValidationError naming `kind`."""
    if kind not in KINDS:
        raise ValidationError([{"field": "kind", "message": f"must be one of "
                                                            f"{', '.join(KINDS)}"}])
    return kind
