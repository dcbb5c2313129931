"""Bulk-resolve alerts across tenants: Defender calls made against the minimum the batch
endpoint allows (one call per tenant, as long as a tenant's alerts fit one chunk), and
the time to done, against one PATCH per alert in the same run.

The job's rows, the tenants and the call budgets are in Azurite; Defender is
tests/triage_fakes.FakeDefender (its per-tenant limits enforced: batchUpdate 10 a minute,
PATCH 100 a minute) with `--latency-ms` of wall time per call, since the simulator has no
batchUpdate yet. Each tenant's messages are run by a pool of `--workers` threads, as the
host runs queue messages in parallel. The audit trail is the in-memory fake (the real one
adds one table write per alert in both modes).

python -m bench.bulk_triage [--tenants 10] [--alerts 1000] [--latency-ms 150] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devhost.azurite import Azurite
from shared.model import Tenant
from shared.storage import tables
from shared.storage.bulk_jobs import BulkJobs
from shared.storage.call_budget import CallBudget
from shared.storage.connection import StorageConnection
from shared.storage.queues import BulkQueue
from shared.storage.tenants import TenantRepository
from shared.triage import bulk
from shared.triage.bulk import BulkStores, BulkTriage, Hooks, Target
from shared.triage.model import Actor, Change
from tests.triage_fakes import Audit, FakeDefender, Queue

ROOT = Path(__file__).resolve().parents[1]
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="closed in bulk")


class WallClock:
    def __call__(self) -> datetime:
        return datetime.now(UTC)


class SlowDefender(FakeDefender):
    """FakeDefender with a round trip's latency per call."""

    def __init__(self, latency: float) -> None:
        super().__init__(WallClock(), limited=True)  # type: ignore[arg-type]
        self.latency = latency

    def batch_update(self, *args: Any) -> None:
        time.sleep(self.latency)
        super().batch_update(*args)

    def update_alert(self, *args: Any) -> dict[str, Any]:
        time.sleep(self.latency)
        return super().update_alert(*args)


def run(storage: StorageConnection, mode: str, tenants: int, alerts: int, latency: float,
        workers: int) -> dict[str, Any]:
    suffix = f"{mode}{uuid.uuid4().hex[:8]}"
    registry = TenantRepository(tables.table(storage, f"BenchTenants{suffix}"))
    defender, queue, audit = SlowDefender(latency), Queue(), Audit()
    service = BulkTriage(
        BulkStores(BulkJobs(tables.table(storage, f"BenchBulk{suffix}")),
                   CallBudget(tables.table(storage, f"BenchBudget{suffix}")), registry,
                   BulkQueue(queue)),
        defender, Hooks(record=audit.record), token=lambda t: "token",
        base=lambda t: f"https://{t.tenant_id}")
    targets = []
    for n in range(tenants):
        tenant_id = str(uuid.uuid4())
        registry.add(Tenant(tenant_id, f"Customer {n}", access="triage"))
        targets += [Target(tenant_id, a, {"status": "New"})
                    for a in defender.seed(tenant_id, alerts // tenants)]
    started = time.perf_counter()
    job = service.submit(Actor("bench", "bench", "api"), RESOLVE, targets)
    with ThreadPoolExecutor(workers) as pool:
        while queue.sent:
            batch, queue.sent[:] = list(queue.sent), []  # workers idle: nothing appends
            due = [m for m, delay in batch if not delay]
            later = [(m, delay) for m, delay in batch if delay]
            if not due and later:  # every tenant is waiting: wait with them
                time.sleep(min(d for _, d in later))
                due, later = [m for m, _ in later], []
            list(pool.map(service.run, due))
            queue.sent += [(m, None) for m, _ in later]
    elapsed = time.perf_counter() - started
    status = service.status(job.job_id, limit=10)
    assert status is not None and status.finished, status
    calls = Counter(kind for kind, *_ in defender.calls)
    return {"mode": mode, "tenants": tenants, "alerts": job.total,
            "done": status.counts["done"], "batch_calls": calls["batch"],
            "patch_calls": calls["patch"], "throttled": defender.refused,
            "seconds": round(elapsed, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=150)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    azurite = Azurite(ROOT).start()
    try:
        storage = StorageConnection.from_env(
            {"AzureWebJobsStorage": azurite.connection_string}, "AzureWebJobsStorage")
        results = [run(storage, "batch", args.tenants, args.alerts, args.latency_ms / 1000,
                       args.workers)]
        patch_up_to = bulk.PATCH_UP_TO
        bulk.PATCH_UP_TO = 10**9  # the baseline: every alert by PATCH
        try:
            results.append(run(storage, "patch", args.tenants, args.alerts,
                               args.latency_ms / 1000, args.workers))
        finally:
            bulk.PATCH_UP_TO = patch_up_to
    finally:
        azurite.stop()
    minimum = args.tenants * -(-(args.alerts // args.tenants) // bulk.CHUNK)
    print(json.dumps({"minimum_batch_calls": minimum, "runs": results,
                      "speedup": round(results[1]["seconds"] / results[0]["seconds"], 1)},
                     indent=2))


if __name__ == "__main__":
    main()
