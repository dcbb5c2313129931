"""What the portal reads: alerts across tenants, open counts, per-day counts, emails.

The alerts list reads the AlertIndex (storage/alert_index.py: every tenant's alerts,
newest first, one day a partition) in key order, one day's range at a time, from the
keyset of the last row shown: "Older alerts" costs what the first page costs, at any
depth. Filters run in the table service on the index's columns; a request reads at most
READ_PAGES x page size entries (one query per day of the range it reaches), and says so
(a "continue" link) when it stopped there. The page reads the index alone: the relay
keeps it in step with the Alerts table (shared/ingest/index_feed.py), trailing it by the
relay's lag; an older entry of an alert met on the same page is skipped and deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from shared import timefmt
from shared.model import Tenant
from shared.storage import alert_index
from shared.storage.alert_index import AlertIndex, Key, day_of_key, parts, shown
from shared.storage.alerts import AlertRepository
from shared.storage.keys import decode_key
from shared.storage.tenant_summaries import Counts
from shared.storage.tenants import TenantName

log = logging.getLogger("mssp_hub.portal")

SEVERITIES = ("High", "Medium", "Low", "Informational")
STATUSES = ("New", "InProgress", "Resolved")
OPEN_STATUSES = ("New", "InProgress")
RANGES = {"24h": 1, "7d": 7, "30d": 30, "90d": 90, "180d": 180}
PAGE_SIZE = 50
SCAN_LIMIT = 20_000  # rows read per tenant per request (the overview's counts)
READ_PAGES = 20  # index entries read per alerts page: at most READ_PAGES x page size
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


@dataclass(frozen=True)
class AlertFilter:
    tenant: str = ""
    severity: str = ""
    status: str = ""
    category: str = ""
    device_group: str = ""
    range: str = "7d"
    before: str | None = None  # keyset: the index row key of the last row read

    @classmethod
    def parse(cls, params: dict[str, str], tenant_ids: set[str]) -> AlertFilter:
        """Unknown values fall back to "any": a filter never errors, it narrows or not."""
        def pick(name: str, allowed: Iterable[str]) -> str:
            value = params.get(name, "")
            return value if value in allowed else ""

        def text(name: str) -> str:
            return params.get(name, "").strip()[:200]

        before = params.get("before", "")
        return cls(tenant=pick("tenant", tenant_ids), severity=pick("severity", SEVERITIES),
                   status=pick("status", (*STATUSES, "open")), category=text("category"),
                   device_group=text("device_group"),
                   range=params.get("range") if params.get("range") in RANGES else "7d",
                   before=before if alert_index.valid_token(before) else None)

    def where(self) -> dict[str, tuple[str, ...]]:
        """The index columns this filter narrows, each to the values it allows."""
        where = {column: (value,) for column, value in (
            ("Tenant", self.tenant), ("Severity", self.severity),
            ("Category", self.category), ("RbacGroupName", self.device_group)) if value}
        if self.status:
            where["Status"] = OPEN_STATUSES if self.status == "open" else (self.status,)
        return where

    def query(self, tenant_id: str, now: datetime) -> tuple[str, dict[str, Any]]:
        """An OData filter on one tenant's Alerts partition, with parameters (the table
        service applies all of it); the alerts list reads the index instead (`where`)."""
        clauses = ["PartitionKey eq @pk", "LastUpdated ge @since"]
        params: dict[str, Any] = {"pk": tenant_id,
                                  "since": now - timedelta(days=RANGES[self.range])}
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
    key: str = ""  # its index row key
    product: str = ""  # "" for an alert read from Defender for Endpoint's API

    @property
    def link(self) -> str:
        return PORTAL.format(id=quote(self.alert_id, safe=""), tenant=self.tenant_id)

    @property
    def page(self) -> str:
        """The portal's page of this alert."""
        return (f"/api/portal/tenants/{quote(self.tenant_id, safe='')}/alerts/"
                f"{quote(self.alert_id, safe='')}")

    @property
    def order(self) -> tuple[float, str, str]:
        return (-self.updated.timestamp(), self.tenant_id, self.row_key)


@dataclass
class AlertPage:
    rows: list[AlertRow]
    next_before: str = ""  # the `before` value of the next page, "" on the last
    partial: bool = False  # READ_PAGES x page size entries read before the page filled
    read: int = 0  # index entries read


def _row(tenant_name: str, entry: Any) -> AlertRow:
    version, tenant_id, alert_key = parts(entry["RowKey"])
    listed = shown(entry)
    return AlertRow(
        tenant_id=tenant_id, tenant_name=tenant_name, row_key=alert_key,
        alert_id=decode_key(alert_key), title=listed["Title"],
        severity=entry.get("Severity", ""), status=entry.get("Status", ""),
        category=entry.get("Category", ""), device_group=entry.get("RbacGroupName", ""),
        device=listed["ComputerDnsName"], source=listed["DetectionSource"],
        created=listed["AlertCreationTime"], updated=timefmt.to_datetime(version),
        key=entry["RowKey"], product=listed["Product"])


class _Scan:
    """The index entries of a search in key order, day after day back to the range's
    first, at most `budget` read; where it stopped (`last`) and whether for the budget."""

    def __init__(self, index: AlertIndex, flt: AlertFilter, names: dict[str, str],
                 now: datetime, budget: int, per_request: int) -> None:
        self.index, self.where, self.names, self.budget = index, flt.where(), names, budget
        self.per_request = per_request  # a page's worth: what the table service returns
        self.since = now - timedelta(days=RANGES[flt.range])
        self.since_version = timefmt.from_datetime(self.since)
        self.last = flt.before or ""
        self.day = day_of_key(self.last) if self.last else \
            (now + timedelta(days=1)).strftime("%Y-%m-%d")  # clocks a little ahead
        self.cut, self.read = False, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        first_day = self.since.strftime("%Y-%m-%d")
        while self.day >= first_day:
            for entry in self.index.read(self.day, self.last, self.where, self.budget,
                                         self.per_request):
                self.budget -= 1
                self.read += 1
                self.last = entry["RowKey"]
                if parts(entry["RowKey"])[0] < self.since_version:
                    return
                if entry["Tenant"] in self.names:
                    yield entry
            if self.budget <= 0:
                self.cut = True
                return
            self.day = (datetime.strptime(self.day, "%Y-%m-%d")
                        - timedelta(days=1)).strftime("%Y-%m-%d")


def _forget(index: AlertIndex, older: list[Key]) -> None:
    """Delete entries of versions older than one the page showed (a late writer's)."""
    if older:
        try:
            index.remove(older)
        except Exception:  # a repair: the page is right without it
            log.warning("could not delete %d outdated alert index entries", len(older))


def search_alerts(index: AlertIndex, tenants: Sequence[Tenant | TenantName], flt: AlertFilter,
                  now: datetime | None = None, page_size: int = PAGE_SIZE) -> AlertPage:
    """The newest `page_size` alerts matching `flt` of `tenants`, after its keyset if it
    has one: at most READ_PAGES x page_size index entries read, whatever the depth."""
    now = now or datetime.now(UTC)
    names = {t.tenant_id: t.display_name for t in tenants
             if not flt.tenant or t.tenant_id == flt.tenant}
    scan = _Scan(index, flt, names, now, READ_PAGES * page_size, page_size + 1)
    shown: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    older: list[Key] = []
    for entry in scan:  # one more than a page: is there a next?
        alert = parts(entry["RowKey"])[1:]
        if alert in seen:
            older.append((entry["PartitionKey"], entry["RowKey"]))
            continue
        seen.add(alert)
        shown.append(entry)
        if len(shown) > page_size:
            break
    _forget(index, older)
    rows = [_row(names[e["Tenant"]], e) for e in shown[:page_size]]
    if len(shown) > page_size:
        return AlertPage(rows, rows[-1].key, read=scan.read)
    if scan.cut:
        return AlertPage(rows, scan.last, partial=True, read=scan.read)
    return AlertPage(rows, read=scan.read)


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
