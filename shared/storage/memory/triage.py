"""In-memory triage family: bulk jobs and the Defender call budget. Each subclasses the
real repository and replaces only what touches the table; tests/contract/test_triage.py
holds both to one contract."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import UTC, datetime

from shared.storage import bulk_jobs, call_budget
from shared.storage.bulk_jobs import BulkItem, BulkJob, TenantWork
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.memory import new_etag


class MemoryBulkJobs(bulk_jobs.BulkJobs):
    def __init__(self) -> None:
        self.headers: dict[str, BulkJob] = {}
        self.work_rows: dict[tuple[str, str], TenantWork] = {}
        self.item_rows: dict[tuple[str, str], BulkItem] = {}  # (job, item key)

    def create(self, job: BulkJob, works: Iterable[TenantWork], items: Iterable[BulkItem]
               ) -> None:
        if job.job_id in self.headers:
            raise AlreadyExists(f"bulk job {job.job_id} exists")
        for work in works:
            stored = copy.deepcopy(work)
            stored.etag = new_etag()
            self.work_rows[(job.job_id, work.tenant_id)] = stored
        for item in items:
            key = bulk_jobs._item_key(item.tenant_id, item.alert_id)
            self.item_rows[(job.job_id, key)] = copy.deepcopy(item)
        self.headers[job.job_id] = copy.deepcopy(job)

    def get(self, job_id: str) -> BulkJob | None:
        found = self.headers.get(job_id)
        return copy.deepcopy(found) if found else None

    def works(self, job_id: str) -> list[TenantWork]:
        return [copy.deepcopy(w) for (j, t), w in sorted(self.work_rows.items())
                if j == job_id]

    def work(self, job_id: str, tenant_id: str) -> TenantWork | None:
        found = self.work_rows.get((job_id, tenant_id))
        return copy.deepcopy(found) if found else None

    def _keys(self, job_id: str, prefix: str) -> list[str]:
        return sorted(k for j, k in self.item_rows if j == job_id and k.startswith(prefix))

    def items(self, job_id: str, tenant_id: str) -> list[BulkItem]:
        return [copy.deepcopy(self.item_rows[(job_id, k)])
                for k in self._keys(job_id, bulk_jobs._item_prefix(tenant_id))]

    def page(self, job_id: str, after: str = "", limit: int = 100
             ) -> tuple[list[BulkItem], str]:
        keys = [k for k in self._keys(job_id, "a~") if k > after]
        chosen = keys[:limit]
        more = len(keys) > limit
        return ([copy.deepcopy(self.item_rows[(job_id, k)]) for k in chosen],
                chosen[-1] if more else "")

    def checkpoint(self, work: TenantWork) -> None:
        stored = self.work_rows.get((work.job_id, work.tenant_id))
        if stored is None or stored.etag != work.etag:
            raise StateChanged(f"the work of {work.tenant_id} in job {work.job_id} "
                               "changed since it was read")
        work.etag = new_etag()
        self.work_rows[(work.job_id, work.tenant_id)] = copy.deepcopy(work)

    def settle(self, job_id: str, items: Iterable[BulkItem]) -> None:
        now = datetime.now(UTC)
        for item in items:
            item.at = item.at or now
            key = (job_id, bulk_jobs._item_key(item.tenant_id, item.alert_id))
            stored = self.item_rows.get(key) or BulkItem(item.tenant_id, item.alert_id)
            stored.outcome, stored.detail, stored.at = item.outcome, item.detail, item.at
            self.item_rows[key] = stored


class MemoryCallBudget(call_budget.CallBudget):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[list[float], float, str]] = {}

    def _read(self, tenant_id: str, kind: str) -> tuple[list[float], float, str | None]:
        found = self.rows.get((tenant_id, kind))
        if found is None:
            return [], 0.0, None
        calls, held, etag = found
        return list(calls), held, etag

    def _write(self, tenant_id: str, kind: str, calls: list[float], held_until: float,
               etag: str | None) -> None:
        current = self.rows.get((tenant_id, kind))
        if (current[2] if current else None) != etag:
            raise StateChanged("another worker spent the budget meanwhile")
        self.rows[(tenant_id, kind)] = ([round(t, 3) for t in calls], held_until, new_etag())
