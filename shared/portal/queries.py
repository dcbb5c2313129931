"""What the portal reads: alerts across tenants, open counts, per-day counts, emails.

The Alerts table is partitioned by tenant and keyed by alert id, so there is no index by
time: each page is one bounded query per tenant (filters run in the table service, only
the indexed columns come back, never the alert bodies), merged and ordered here. Paging
is by keyset (the last row shown), so a later page reads less than the first. A tenant
with more matching rows than SCAN_LIMIT is reported as cut short, never silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from shared.model import Tenant
from shared.storage.alerts import AlertRepository
from shared.storage.tenant_summaries import Counts

SEVERITIES = ("High", "Medium", "Low", "Informational")
STATUSES = ("New", "InProgress", "Resolved")
OPEN_STATUSES = ("New", "InProgress")
RANGES = {"24h": 1, "7d": 7, "30d": 30, "90d": 90, "180d": 180}
PAGE_SIZE = 50
SCAN_LIMIT = 20_000  # rows read per tenant per request
PARALLEL = 8
CHART_DAYS = 14
PORTAL = "https://security.microsoft.com/alerts/{id}?tid={tenant}"
T = TypeVar("T")


def per_tenant(tenants: list[Tenant], read: Callable[[Tenant], T]) -> list[tuple[Tenant, T]]:
    """One read per tenant, a few at a time (each is a round trip to the table service)."""
    if len(tenants) <= 1:
        return [(t, read(t)) for t in tenants]
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(tenants))) as pool:
        return list(zip(tenants, pool.map(read, tenants), strict=True))


# "older than" times a link may carry: the query moves them by a microsecond
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class AlertFilter:
    tenant: str = ""
    severity: str = ""
    status: str = ""
    category: str = ""
    device_group: str = ""
    range: str = "7d"
    before: tuple[datetime, str, str] | None = None  # keyset: the last row shown

    @classmethod
    def parse(cls, params: dict[str, str], tenant_ids: set[str]) -> AlertFilter:
        """Unknown values fall back to "any": a filter never errors, it narrows or not."""
        def pick(name: str, allowed: Iterable[str]) -> str:
            value = params.get(name, "")
            return value if value in allowed else ""

        def text(name: str) -> str:
            return params.get(name, "").strip()[:200]

        before = None
        parts = params.get("before", "").split("~")
        if len(parts) == 3:
            try:
                when = datetime.fromisoformat(parts[0]).astimezone(UTC)
                before = (when, parts[1], parts[2]) if EARLIEST <= when < LATEST else None
            except (ValueError, OverflowError):  # not a time, or beyond datetime's years
                before = None
        return cls(tenant=pick("tenant", tenant_ids), severity=pick("severity", SEVERITIES),
                   status=pick("status", (*STATUSES, "open")), category=text("category"),
                   device_group=text("device_group"),
                   range=params.get("range") if params.get("range") in RANGES else "7d",
                   before=before)

    def query(self, tenant_id: str, now: datetime) -> tuple[str, dict[str, Any]]:
        """An OData filter with parameters; the table service applies all of it."""
        clauses = ["PartitionKey eq @pk", "LastUpdated ge @since"]
        params: dict[str, Any] = {"pk": tenant_id,
                                  "since": now - timedelta(days=RANGES[self.range])}
        if self.before:
            clauses.append("LastUpdated le @before")
            # the table keeps 100 ns, Python 1 us: the exact cut is made after reading
            params["before"] = self.before[0] + timedelta(microseconds=1)
        if self.status == "open":
            clauses.append("(Status eq 'New' or Status eq 'InProgress')")
        for name, column in (("severity", "Severity"), ("status", "Status"),
                             ("category", "Category"), ("device_group", "RbacGroupName")):
            value = getattr(self, name)
            if value and value != "open":
                clauses.append(f"{column} eq @{name}")
                params[name] = value
        return " and ".join(clauses), params

    def params(self, **changes: str) -> dict[str, str]:
        values = {"tenant": self.tenant, "severity": self.severity, "status": self.status,
                  "category": self.category, "device_group": self.device_group,
                  "range": self.range, **changes}
        return {k: v for k, v in values.items() if v}


@dataclass
class AlertRow:
    tenant_id: str
    tenant_name: str
    row_key: str
    alert_id: str
    title: str
    severity: str
    status: str
    category: str
    device_group: str
    device: str
    source: str
    created: str
    updated: datetime

    @property
    def link(self) -> str:
        return PORTAL.format(id=quote(self.alert_id, safe=""), tenant=self.tenant_id)

    @property
    def order(self) -> tuple[float, str, str]:
        return (-self.updated.timestamp(), self.tenant_id, self.row_key)


@dataclass
class AlertPage:
    rows: list[AlertRow]
    next_before: str = ""  # the `before` value of the next page, "" on the last
    cut_short: list[str] = field(default_factory=list)  # tenant names


def _row(tenant: Tenant, entity: Any) -> AlertRow:
    return AlertRow(
        tenant_id=tenant.tenant_id, tenant_name=tenant.display_name, row_key=entity["RowKey"],
        alert_id=entity.get("AlertId", ""), title=entity.get("Title", ""),
        severity=entity.get("Severity", ""), status=entity.get("Status", ""),
        category=entity.get("Category", ""), device_group=entity.get("RbacGroupName", ""),
        device=entity.get("ComputerDnsName", ""), source=entity.get("DetectionSource", ""),
        created=entity.get("AlertCreationTime", ""),
        updated=entity["LastUpdated"].astimezone(UTC))


def search_alerts(alerts: AlertRepository, tenants: list[Tenant], flt: AlertFilter,
                  now: datetime | None = None, page_size: int = PAGE_SIZE) -> AlertPage:
    """The newest `page_size` alerts matching `flt`, older than its keyset if it has one."""
    now = now or datetime.now(UTC)
    chosen = [t for t in tenants if not flt.tenant or t.tenant_id == flt.tenant]

    def read(tenant: Tenant) -> tuple[list[Any], bool]:
        text, params = flt.query(tenant.tenant_id, now)
        return alerts.search(text, params, SCAN_LIMIT)

    rows: list[AlertRow] = []
    cut_short = []
    for tenant, (entities, cut) in per_tenant(chosen, read):
        if cut:
            cut_short.append(tenant.display_name)
        rows.extend(_row(tenant, e) for e in entities if e.get("LastUpdated"))
    if flt.before:
        mark = (-flt.before[0].timestamp(), flt.before[1], flt.before[2])
        rows = [r for r in rows if r.order > mark]
    rows.sort(key=lambda r: r.order)
    page = rows[:page_size]
    next_before = ""
    if len(rows) > page_size:
        last = page[-1]
        next_before = f"{last.updated.isoformat()}~{last.tenant_id}~{last.row_key}"
    return AlertPage(page, next_before, cut_short)


@dataclass
class TenantAlerts:
    open_by_severity: dict[str, int]
    per_day: dict[tuple[str, str], int]  # (YYYY-MM-DD, severity) -> alerts raised
    cut_short: bool = False


def tenant_alert_counts(alerts: AlertRepository, tenant_id: str, now: datetime | None = None,
                        days: int = CHART_DAYS) -> TenantAlerts:
    """Open alerts by severity, and alerts raised per day: one query, three columns."""
    now = now or datetime.now(UTC)
    first_day = (now - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    entities, cut = alerts.open_or_raised_since(tenant_id, first_day, SCAN_LIMIT * 5)
    counts = TenantAlerts(dict.fromkeys(SEVERITIES, 0), {}, cut)
    for entity in entities:
        severity = entity.get("Severity", "")
        if entity.get("Status") in OPEN_STATUSES and severity in counts.open_by_severity:
            counts.open_by_severity[severity] += 1
        day = str(entity.get("AlertCreationTime", ""))[:10]
        if day >= first_day:
            counts.per_day[(day, severity)] = counts.per_day.get((day, severity), 0) + 1
    return counts


def from_summary(counts: Counts | None, now: datetime, days: int = CHART_DAYS
                 ) -> TenantAlerts:
    """A tenant's summary as the overview shows it (no summary yet: nothing counted)."""
    counts = counts or Counts()
    first = (now - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    return TenantAlerts({s: counts.open.get(s, 0) for s in SEVERITIES},
                        {k: n for k, n in counts.per_day().items() if k[0] >= first})
