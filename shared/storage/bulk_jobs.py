"""Bulk triage jobs: one partition per job in BulkJobs, so a job's rows are read by range
and written 100 to a transaction.

Rows (PartitionKey = job id):
- "job": the header (who, the change, how many alerts and tenants). Written last at
  creation: a job half made by a request that died has no header and is not shown; the
  same job id sent again finishes it (`create`).
- "t~<tenant>": the tenant's work: counts as of its last step, the chunk being sent
  (`Inflight`: its alert ids, how, and until when its sender holds it) and the number of
  chunks begun. Only the worker holding the tenant's message writes it, guarded by etag.
- "a~<tenant>~<alert key>": one alert's outcome (pending, done, refused, failed), why,
  and its fields as the hub had them before (for the audit entry).
Progress is the sum of the tenant rows: one bounded read (a row per tenant of the job).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.storage import batch
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.keys import decode_key, encode_key
from shared.triage.model import Actor, Change

HEADER = "job"
OUTCOMES = ("pending", "done", "refused", "failed")


@dataclass
class BulkJob:
    job_id: str
    actor: Actor
    change: Change
    total: int  # alerts in the job
    tenants: int
    source: str  # "selection", or the filter it was made from, in words
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class BulkItem:
    tenant_id: str
    alert_id: str
    outcome: str = "pending"
    detail: str = ""  # why refused or failed; Defender's answer
    before: dict[str, Any] = field(default_factory=dict)
    title: str = ""  # as the alerts list showed it (shown escaped: alert text is hostile)
    at: datetime | None = None  # when the outcome was recorded


@dataclass
class Inflight:
    """A chunk begun: these alerts are being sent (`via` "batch" or "patch"); until
    `until` its sender may still be on the call, after it the chunk's fate is unknown
    and the next worker finds out (shared/triage/bulk.py)."""

    seq: int
    ids: list[str]
    via: str
    until: datetime

    def dump(self) -> str:
        return json.dumps({"seq": self.seq, "ids": self.ids, "via": self.via,
                           "until": self.until.timestamp()})

    @classmethod
    def load(cls, text: str) -> Inflight | None:
        if not text:
            return None
        data = json.loads(text)
        return cls(data["seq"], list(data["ids"]), data["via"],
                   datetime.fromtimestamp(data["until"], UTC))


@dataclass
class TenantWork:
    job_id: str
    tenant_id: str
    tenant_name: str
    total: int
    done: int = 0
    refused: int = 0
    failed: int = 0
    begun: int = 0  # chunks begun so far (the next one's seq)
    calls: int = 0  # Defender calls made (batchUpdate and PATCH)
    inflight: Inflight | None = None
    note: str = ""  # e.g. "throttled until 08:12:00"
    finished: bool = False
    etag: str | None = field(default=None, repr=False, compare=False)

    @property
    def pending(self) -> int:
        return self.total - self.done - self.refused - self.failed


def _tenant_key(tenant_id: str) -> str:
    return f"t~{tenant_id}"


def _item_prefix(tenant_id: str) -> str:
    return f"a~{tenant_id}~"


def _item_key(tenant_id: str, alert_id: str) -> str:
    return f"{_item_prefix(tenant_id)}{encode_key(alert_id)}"


def _upper(prefix: str) -> str:
    """The first key after every key starting with `prefix` (which ends in "~")."""
    return prefix[:-1] + "\x7f"


def _item_entity(job_id: str, item: BulkItem) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": job_id, "RowKey": _item_key(item.tenant_id, item.alert_id),
        "Tenant": item.tenant_id, "Outcome": item.outcome, "Detail": item.detail[:2000],
        "Before": json.dumps(item.before), "Title": item.title[:500]}
    if item.at is not None:
        entity["At"] = item.at
    return entity


def _item(entity: Any) -> BulkItem:
    return BulkItem(entity["Tenant"], decode_key(entity["RowKey"].split("~", 2)[2]),
                    entity.get("Outcome", "pending"), entity.get("Detail", ""),
                    json.loads(entity.get("Before") or "{}"), entity.get("Title", ""),
                    entity.get("At"))


def _work_entity(work: TenantWork) -> dict[str, Any]:
    return {"PartitionKey": work.job_id, "RowKey": _tenant_key(work.tenant_id),
            "Name": work.tenant_name, "Total": work.total, "Done": work.done,
            "Refused": work.refused, "Failed": work.failed, "Begun": work.begun,
            "Calls": work.calls, "Inflight": work.inflight.dump() if work.inflight else "",
            "Note": work.note[:1000], "Finished": work.finished}


def _work(entity: Any) -> TenantWork:
    work = TenantWork(entity["PartitionKey"], entity["RowKey"][2:], entity.get("Name", ""),
                      entity.get("Total", 0), entity.get("Done", 0), entity.get("Refused", 0),
                      entity.get("Failed", 0), entity.get("Begun", 0), entity.get("Calls", 0),
                      Inflight.load(entity.get("Inflight", "")), entity.get("Note", ""),
                      bool(entity.get("Finished", False)))
    work.etag = entity.metadata["etag"]
    return work


def _header_entity(job: BulkJob) -> dict[str, Any]:
    return {"PartitionKey": job.job_id, "RowKey": HEADER, "ActorId": job.actor.id,
            "ActorName": job.actor.name, "ActorVia": job.actor.via,
            "Change": json.dumps(job.change.body()), "Total": job.total,
            "Tenants": job.tenants, "Source": job.source[:1000], "Created": job.created_at}


def _header(entity: Any) -> BulkJob:
    body = json.loads(entity["Change"])
    change = Change(status=body.get("status"), assigned_to=body.get("assignedTo"),
                    classification=body.get("classification"),
                    determination=body.get("determination"), comment=body.get("comment"))
    return BulkJob(entity["PartitionKey"],
                   Actor(entity["ActorId"], entity["ActorName"], entity["ActorVia"]),
                   change, entity["Total"], entity["Tenants"], entity.get("Source", ""),
                   entity["Created"])


class BulkJobs:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    # creating a job ------------------------------------------------------------------------
    def create(self, job: BulkJob, works: Iterable[TenantWork], items: Iterable[BulkItem]
               ) -> None:
        """The job's rows, then its header. AlreadyExists when the job has a header
        already (a form or request sent twice): nothing is written then. A job without a
        header (its request died while writing) is written again whole: no worker has
        touched it, since its messages are sent after the header."""
        if self.get(job.job_id) is not None:
            raise AlreadyExists(f"bulk job {job.job_id} exists")
        rows = [_work_entity(w) for w in works] + [_item_entity(job.job_id, i) for i in items]
        self._upsert(rows)
        try:
            self.client.create_entity(_header_entity(job))
        except ResourceExistsError as exc:
            raise AlreadyExists(f"bulk job {job.job_id} exists") from exc

    def _upsert(self, rows: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE
                ) -> None:
        for start in range(0, len(rows), 100):
            batch.submit_transaction(self.client, [("upsert", r, {"mode": mode})
                                                   for r in rows[start:start + 100]])

    # reads ---------------------------------------------------------------------------------
    def get(self, job_id: str) -> BulkJob | None:
        try:
            return _header(self.client.get_entity(job_id, HEADER))
        except ResourceNotFoundError:
            return None

    def works(self, job_id: str) -> list[TenantWork]:
        """Every tenant's work of the job (its progress: one row per tenant)."""
        return [_work(e) for e in self._range(job_id, "t~", _upper("t~"))]

    def work(self, job_id: str, tenant_id: str) -> TenantWork | None:
        try:
            return _work(self.client.get_entity(job_id, _tenant_key(tenant_id)))
        except ResourceNotFoundError:
            return None

    def items(self, job_id: str, tenant_id: str) -> list[BulkItem]:
        """The tenant's alerts in the job, in key order."""
        prefix = _item_prefix(tenant_id)
        return [_item(e) for e in self._range(job_id, prefix, _upper(prefix))]

    def page(self, job_id: str, after: str = "", limit: int = 100
             ) -> tuple[list[BulkItem], str]:
        """Up to `limit` alerts of the job in key order after the token `after`, and the
        token of the next page ("" on the last)."""
        low = after if after.startswith("a~") else "a~"
        rows = self.client.query_entities(
            "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high",
            parameters={"pk": job_id, "low": low, "high": _upper("a~")},
            results_per_page=min(limit + 1, 1000))
        found: list[Any] = []
        for entity in rows:
            found.append(entity)
            if len(found) > limit:
                break
        more = len(found) > limit
        found = found[:limit]
        return [_item(e) for e in found], found[-1]["RowKey"] if more else ""

    def _range(self, job_id: str, low: str, high: str) -> Iterator[Any]:
        return iter(self.client.query_entities(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            parameters={"pk": job_id, "low": low, "high": high}))

    # a tenant's steps ----------------------------------------------------------------------
    def checkpoint(self, work: TenantWork) -> None:
        """Write the tenant's work as it stands now (counts, the chunk in flight, the
        note), only if nobody wrote it since it was read: StateChanged otherwise (another
        worker holds the tenant's message). `work.etag` is the new one after."""
        try:
            meta = self.client.update_entity(_work_entity(work), mode=UpdateMode.REPLACE,
                                             etag=work.etag,
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise StateChanged(f"the work of {work.tenant_id} in job {work.job_id} "
                               "changed since it was read") from exc
        work.etag = meta["etag"]

    def settle(self, job_id: str, items: Iterable[BulkItem]) -> None:
        """Record these alerts' outcomes (written again on redelivery: the same rows)."""
        now = datetime.now(UTC)
        rows = []
        for item in items:
            item.at = item.at or now
            rows.append({k: v for k, v in _item_entity(job_id, item).items()
                         if k in ("PartitionKey", "RowKey", "Outcome", "Detail", "At")})
        self._upsert(rows, UpdateMode.MERGE)
