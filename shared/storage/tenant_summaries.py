"""Tenant summaries: each tenant's open alerts by severity and alerts raised per day and
severity, so the portal overview reads one row per tenant instead of recounting alerts.

The authoritative counts are the tally row in the tenant's IngestState partition, which
the relay changes in the same transaction as it records a chunk sent
(shared/ingest/tally.py). Each change bumps `seq`; the relay then copies the counts here,
one partition, one row per tenant, and a copy never replaces a newer one (by `seq`), so a
late or repeated copy is harmless. The backfill keeps its progress in the same table
(partition "backfill", a row per part of the job).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

PARTITION = "summary"
TOTALS = "totals"  # PartitionKey of the chart's totals over every tenant (row "raised")
PROGRESS = "backfill"  # PartitionKey of the backfill's progress rows (tools/backfill.py)
KEEP_DAYS = 30  # days of "raised" kept per tenant (the chart shows the last 14)
OPEN_STATUSES = ("New", "InProgress")


@dataclass
class Counts:
    """One tenant's counts, and the sequence number of the change that made them."""

    open: dict[str, int] = field(default_factory=dict)  # severity -> open alerts
    raised: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> severity -> n
    seq: int = 0

    def add(self, severity: str, day: str | None, opened: int, raised: int) -> None:
        """Move the open count of `severity` by `opened`, and the raised count of (day,
        severity) by `raised`; zero counts are dropped."""
        if opened:
            _bump(self.open, severity, opened)
        if raised and day:
            per = self.raised.setdefault(day, {})
            _bump(per, severity, raised)
            if not per:
                del self.raised[day]

    def trimmed(self, today: date) -> Counts:
        """These counts without the days older than KEEP_DAYS before `today`."""
        first = first_day(today)
        return Counts(dict(self.open), {d: dict(v) for d, v in self.raised.items()
                                        if d >= first}, self.seq)

    def per_day(self) -> dict[tuple[str, str], int]:
        """(day, severity) -> raised, as the chart takes it."""
        return {(d, s): n for d, per in self.raised.items() for s, n in per.items()}

    def properties(self) -> dict[str, Any]:
        return {"Open": json.dumps(self.open, sort_keys=True),
                "Raised": json.dumps(self.raised, sort_keys=True), "Seq": str(self.seq)}

    @classmethod
    def of(cls, entity: Mapping[str, Any]) -> Counts:
        return cls(json.loads(entity.get("Open") or "{}"),
                   json.loads(entity.get("Raised") or "{}"), int(entity.get("Seq") or 0))

    def same_counts(self, other: Counts) -> bool:
        return (self.open, self.raised) == (other.open, other.raised)


def _bump(counts: dict[str, int], key: str, by: int) -> None:
    value = counts.get(key, 0) + by
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def next_seq(seq: int) -> int:
    """The sequence number after `seq`: the time in microseconds, or one more, so that a
    tally started anew (a tenant erased and onboarded again) still copies over its old
    summary. Stored as a string (an Int64 the SDK would refuse as Int32)."""
    return max(seq + 1, int(time.time() * 1_000_000))


def first_day(today: date) -> str:
    """The first day (YYYY-MM-DD) whose raised counts are kept."""
    return (today - timedelta(days=KEEP_DAYS - 1)).isoformat()


def recount(rows: list[Mapping[str, Any]], today: date) -> Counts:
    """The counts of Alerts rows (Severity, Status, AlertCreationTime): what the tally
    must equal once every event of them is relayed (the backfill's start, and tests)."""
    counts = Counts()
    first = first_day(today)
    for row in rows:
        severity = str(row.get("Severity") or "")
        day = str(row.get("AlertCreationTime") or "")[:10]
        counts.add(severity, day if day >= first else None,
                   1 if row.get("Status") in OPEN_STATUSES else 0, 1)
    return counts


class TenantSummaries:
    """The TenantSummaries table: partition "summary", row <tenant id>."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    def publish(self, tenant_id: str, counts: Counts) -> bool:
        """Copy `counts` unless a copy as new or newer is there; False when it was."""
        entity = {"PartitionKey": PARTITION, "RowKey": tenant_id, **counts.properties()}
        for _ in range(5):
            try:
                row = self.client.get_entity(PARTITION, tenant_id, select=["Seq"])
            except ResourceNotFoundError:
                try:
                    self.client.create_entity(entity)
                    return True
                except ResourceExistsError:
                    continue
            if int(row.get("Seq") or 0) >= counts.seq:
                return False
            try:
                self.client.update_entity(entity, mode=UpdateMode.REPLACE,
                                          etag=row.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return True
            except HttpResponseError as exc:
                if exc.status_code not in (404, 412):
                    raise
        raise RuntimeError(f"the summary of {tenant_id} kept changing")

    def all(self) -> dict[str, Counts]:
        """Every tenant's summary, in one query."""
        return {row["RowKey"]: Counts.of(row) for row in self.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": PARTITION})}

    def between(self, first: str, last: str) -> dict[str, Counts]:
        """The summaries of the tenant ids from `first` to `last` (a page of the
        overview, in id order): one query, a row per tenant of the range."""
        return {row["RowKey"]: Counts.of(row) for row in self.client.query_entities(
            "PartitionKey eq @pk and RowKey ge @first and RowKey le @last",
            parameters={"pk": PARTITION, "first": first, "last": last})}

    def of(self, tenant_ids: Iterable[str]) -> dict[str, Counts]:
        """The summaries of a few tenants (those needing attention): a read each."""
        def read(tenant_id: str) -> tuple[str, Counts | None]:
            try:
                return tenant_id, Counts.of(self.client.get_entity(PARTITION, tenant_id))
            except ResourceNotFoundError:
                return tenant_id, None

        ids = list(tenant_ids)
        if not ids:
            return {}
        with ThreadPoolExecutor(max_workers=min(8, len(ids))) as pool:
            return {t: c for t, c in pool.map(read, ids) if c is not None}

    def raised_totals(self, max_age: timedelta) -> dict[str, dict[str, int]]:
        """Alerts raised per day and severity over every tenant, for the chart: one row,
        recounted from every summary (one query) when older than `max_age`, so a chart
        view reads one row and the recount is paid once per `max_age` at most."""
        now = datetime.now(UTC)
        try:
            row = self.client.get_entity(TOTALS, "raised")
            if row["At"] > now - max_age:
                return json.loads(row.get("Raised") or "{}")
        except ResourceNotFoundError:
            pass
        totals = Counts()
        for counts in self.all().values():
            for (day, severity), n in counts.per_day().items():
                totals.add(severity, day, 0, n)
        self.client.upsert_entity({"PartitionKey": TOTALS, "RowKey": "raised", "At": now,
                                   "Raised": json.dumps(totals.raised, sort_keys=True)},
                                  mode=UpdateMode.REPLACE)
        return totals.raised

    # the backfill's progress ----------------------------------------------------------------
    def progress(self, part: str) -> str:
        """How far the backfill's `part` got ("" before it started)."""
        try:
            return str(self.client.get_entity(PROGRESS, part).get("Through") or "")
        except ResourceNotFoundError:
            return ""

    def save_progress(self, part: str, through: str) -> None:
        self.client.upsert_entity({"PartitionKey": PROGRESS, "RowKey": part,
                                   "Through": through}, mode=UpdateMode.REPLACE)
