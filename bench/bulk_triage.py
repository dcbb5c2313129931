"""Bulk-resolve alerts across tenants: Defender calls made against the minimum the batch
endpoint allows (one call per tenant, as long as a tenant's alerts fit one chunk), the
storage requests, and the time to done, against one PATCH per alert in the same run
(the same job with `PATCH_UP_TO` raised).

Default: the job as the host runs it against the simulator over HTTPS, with the real
DefenderClient, Tokens (a token per tenant from the simulator's Entra), the AuditTrail and
the own-change hooks (`shared.services.bulk_hooks`: a mark before each call, a PATCH's
answer stored at once); jobs, budgets, tenants and alerts in Azurite. The simulator keeps
Defender's limits (batchUpdate 10 a minute and 500 an hour, PATCH 100 and 1,500 per
tenant). Each tenant's alerts are fetched into the hub first (outside the clock), as an
analyst selects stored alerts. Defender calls are the simulator's counters; storage
requests are counted at the HTTP layer (bench.transactions.counting), plus the bulk queue's
messages, which the bench delivers itself.

Time is counted twice. The job's clock (its budgets and leases) is wall time plus the time
skipped: when every tenant's message waits on a delay (budget spent, or 429) and no worker
is busy, the clock and the simulator's are moved to the first one due instead of sleeping,
as tests/integration/test_bulk_triage_simulator.py does. `seconds` is wall time;
`budget_seconds` is the job's clock, the time to done a real Defender's limits allow.

`--fake-latency-ms N`: Defender is tests/triage_fakes.FakeDefender instead (its limits
enforced, N ms of wall time per call; no tokens, no own-change hooks), for a latency-modelled
comparison. Each tenant's messages run on a pool of `--workers` threads, as the host runs
queue messages in parallel.

python -m bench.bulk_triage [--tenants 10] [--alerts 1000] [--workers 4]
                            [--fake-latency-ms N]
"""

from __future__ import annotations

import argparse
import heapq
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Env, environment
from bench.transactions import _ports, counting
from shared.messages import BulkTriageRequest, FetchRequest
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens
from shared.model import Tenant
from shared.services import bulk_hooks, consented_app_token, ingestor_for
from shared.storage import call_budget, tables
from shared.storage.bulk_jobs import BulkJobs
from shared.storage.call_budget import CallBudget
from shared.storage.queues import BulkQueue
from shared.storage.tenants import TenantRepository
from shared.triage import bulk
from shared.triage.bulk import BulkStores, BulkTriage, Hooks, Target
from shared.triage.model import Actor, Change
from tests.triage_fakes import FakeDefender

RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="closed in bulk")
READ_WRITE = {"https://api.securitycenter.microsoft.com": ["Alert.ReadWrite.All"]}
ANALYST = Actor("oid-bench", "Bench Analyst", "api")


class BudgetClock:
    """Wall time plus the time skipped while everything waited; `also` moves another
    clock (the simulator's) by as much."""

    def __init__(self, also: Callable[[float], Any] | None = None) -> None:
        self.skipped, self.also = 0.0, also

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skipped)

    def skip(self, seconds: float) -> None:
        self.skipped += seconds
        if self.also is not None:
            self.also(seconds)


class DelayedQueue:
    """The bulk queue as the host delivers it: each message once its delay is over on the
    job's clock."""

    def __init__(self, clock: BudgetClock) -> None:
        self.clock, self.lock = clock, threading.Lock()
        self.waiting: list[tuple[datetime, int, BulkTriageRequest]] = []
        self.sent = 0

    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        at = self.clock() + timedelta(seconds=visibility_timeout or 0)
        with self.lock:
            heapq.heappush(self.waiting, (at, self.sent, BulkTriageRequest.parse(content)))
            self.sent += 1

    def due(self) -> list[BulkTriageRequest]:
        now, found = self.clock(), []
        with self.lock:
            while self.waiting and self.waiting[0][0] <= now:
                found.append(heapq.heappop(self.waiting)[2])
        return found

    def next_at(self) -> datetime | None:
        with self.lock:
            return self.waiting[0][0] if self.waiting else None


def deliver(queue: DelayedQueue, run: Callable[[BulkTriageRequest], None], workers: int
            ) -> None:
    """Run every message when due on `workers` threads until none is left; when all
    wait and none runs, skip the job's clock to the first one due."""
    running: set[Future[None]] = set()
    with ThreadPoolExecutor(workers) as pool:
        while True:
            running |= {pool.submit(run, m) for m in queue.due()}
            at = queue.next_at()
            if running:
                timeout = None if at is None else max(
                    0.0, (at - queue.clock()).total_seconds())
                done, running = wait(running, timeout, FIRST_COMPLETED)
                for future in done:
                    future.result()
            elif at is not None:
                queue.clock.skip(max(0.0, (at - queue.clock()).total_seconds()) + 0.001)
            else:
                return


class SlowDefender(FakeDefender):
    """FakeDefender with a round trip's latency per call."""

    def __init__(self, clock: BudgetClock, latency: float) -> None:
        super().__init__(clock, limited=True)  # type: ignore[arg-type]
        self.latency = latency

    def batch_update(self, *args: Any) -> None:
        time.sleep(self.latency)
        super().batch_update(*args)

    def update_alert(self, *args: Any) -> dict[str, Any]:
        time.sleep(self.latency)
        return super().update_alert(*args)


@contextmanager
def patch_only(on: bool) -> Iterator[None]:
    """The baseline: every alert by PATCH."""
    kept = bulk.PATCH_UP_TO
    if on:
        bulk.PATCH_UP_TO = 10**9
    try:
        yield
    finally:
        bulk.PATCH_UP_TO = kept


def timed_job(env: Env, service: BulkTriage, queue: DelayedQueue, targets: list[Target],
              workers: int) -> dict[str, Any]:
    """Submit, deliver until done; the job's counts, times and storage requests."""
    clock = queue.clock
    skipped, wall, started = clock.skipped, time.perf_counter(), clock()
    with counting(_ports(env.storage.connection_string or "")) as seen:
        job = service.submit(ANALYST, RESOLVE, targets)
        deliver(queue, service.run, workers)
    seconds, budget = time.perf_counter() - wall, (clock() - started).total_seconds()
    status = service.status(job.job_id, limit=1)
    assert status is not None and status.finished, status
    return {"alerts": job.total, "outcomes": {k: v for k, v in status.counts.items() if v},
            "storage_requests": sum(seen.values()) + queue.sent,
            "bulk_queue_messages": queue.sent,
            "storage_top": dict(seen.most_common(6)), "seconds": round(seconds, 2),
            "budget_seconds": round(budget, 1),
            "skipped_seconds": round(clock.skipped - skipped, 1)}


def simulated(env: Env, mode: str, tenants: int, per_tenant: int, workers: int
              ) -> dict[str, Any]:
    """The job against the simulator, the wiring's parts."""
    settings = env.settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="0")
    tokens, sim = Tokens(settings.identity), env.sim
    client = DefenderClient(bulk.CALL_TIMEOUT, settings.identity.ca_bundle)
    ingestor = ingestor_for(settings, tokens, client)
    ids, targets = [], []
    for n in range(tenants):
        tenant_id = sim.add_tenant(f"Bulk {mode} {n}", consent=[settings.identity.client_id],
                                   alerts=0)["id"]
        sim.grant(tenant_id, settings.identity.client_id, READ_WRITE)
        sim.generate(tenant_id, per_tenant, age_seconds=600)
        ingestor.tenants.add(Tenant(tenant_id, f"Bulk {mode} {n}"))
        ingestor.tenants.set_access(tenant_id, "triage", "")
        assert ingestor.run(FetchRequest(tenant_id)).new == per_tenant
        ids.append(tenant_id)
        targets += [Target(tenant_id, a["id"], {"status": a["status"]}, a.get("title", ""))
                    for a in sim.alerts(tenant_id)]
    sim.advance_clock(61)  # the fetches' GETs out of the alerts API's minute
    clock = BudgetClock(also=sim.advance_clock)
    queue = DelayedQueue(clock)
    storage = env.storage
    service = BulkTriage(
        BulkStores(BulkJobs(tables.table(storage, tables.BULK_JOBS)),
                   CallBudget(tables.table(storage, tables.CALL_BUDGET)),
                   TenantRepository(tables.table(storage, tables.TENANTS)), BulkQueue(queue)),
        client, bulk_hooks(storage), token=consented_app_token(settings, tokens),
        base=lambda t: settings.identity.api_base(t.region), clock=clock)
    sim.counters(reset=True)
    with patch_only(mode == "patch"):
        result = timed_job(env, service, queue, targets, workers)
    counters = sim.counters()["tenants"]
    mine = [counters[t] for t in ids]
    resolved = sum(a["status"] == "Resolved" for t in ids for a in sim.alerts(t))
    return {"mode": mode, **result, "resolved_in_defender": resolved,
            "batch_calls": sum(c["batch_updates"] for c in mine),
            "patch_calls": sum(c["patches"] for c in mine),
            "defender_calls": sum(c["calls"] for c in mine),  # incl. 429s and GETs
            "throttled": sum(c["throttled"] for c in mine)}


def faked(env: Env, mode: str, tenants: int, per_tenant: int, workers: int, latency: float
          ) -> dict[str, Any]:
    """The job against FakeDefender with `latency` seconds a call."""
    clock = BudgetClock()
    defender, queue, storage = SlowDefender(clock, latency), DelayedQueue(clock), env.storage
    registry = TenantRepository(tables.table(storage, tables.TENANTS))
    service = BulkTriage(
        BulkStores(BulkJobs(tables.table(storage, tables.BULK_JOBS)),
                   CallBudget(tables.table(storage, tables.CALL_BUDGET)), registry,
                   BulkQueue(queue)),
        defender, Hooks(record=bulk_hooks(storage).record), token=lambda t: "token",
        base=lambda t: f"https://{t.tenant_id}", clock=clock)
    targets = []
    for n in range(tenants):
        tenant = registry.add(Tenant(str(uuid.uuid4()), f"Fake {n}", access="triage"))
        targets += [Target(tenant.tenant_id, a, {"status": "New"})
                    for a in defender.seed(tenant.tenant_id, per_tenant)]
    with patch_only(mode == "patch"):
        result = timed_job(env, service, queue, targets, workers)
    kinds = [kind for kind, *_ in defender.calls]
    return {"mode": mode, **result, "batch_calls": kinds.count("batch"),
            "patch_calls": kinds.count("patch"), "throttled": defender.refused}


def limits_floor(calls: int, limits: call_budget.Limits) -> float:
    """Seconds from a tenant's first call to its last that Defender's sliding windows
    force, each call sent as early as they allow (0: all within the first minute)."""
    at: list[float] = []
    for k in range(calls):
        at.append(max(at[k - limits.per_minute] + 60 if k >= limits.per_minute else 0.0,
                      at[k - limits.per_hour] + 3600 if k >= limits.per_hour else 0.0))
    return at[-1] if at else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--fake-latency-ms", type=float, default=None,
                        help="FakeDefender with this latency a call instead of the simulator")
    args = parser.parse_args()
    per_tenant = args.alerts // args.tenants
    runs = []
    with environment() as env:
        # Defender's limits (the harness lifts them to measure the worker, not the throttle)
        env.sim.limits(per_minute=100, per_hour=1500, batch={"per_minute": 10,
                                                             "per_hour": 500})
        for mode in ("batch", "patch"):
            if args.fake_latency_ms is None:
                runs.append(simulated(env, mode, args.tenants, per_tenant, args.workers))
            else:
                runs.append(faked(env, mode, args.tenants, per_tenant, args.workers,
                                  args.fake_latency_ms / 1000))
    batch, patch = runs
    chunks = -(-per_tenant // bulk.CHUNK)
    print(json.dumps({
        "defender": f"fake, {args.fake_latency_ms:g} ms a call"
        if args.fake_latency_ms is not None else "simulator over HTTPS",
        "minimum_batch_calls": args.tenants * chunks,
        "limits_floor_seconds": {  # per tenant, what the limits alone force
            "batch": limits_floor(chunks, call_budget.BATCH),
            "patch": limits_floor(per_tenant, call_budget.PATCH)},
        "runs": runs,
        "patch_vs_batch": {
            "calls": round((patch["batch_calls"] + patch["patch_calls"])
                           / max(1, batch["batch_calls"] + batch["patch_calls"]), 1),
            "seconds": round(patch["seconds"] / batch["seconds"], 1),
            "budget_seconds": round(patch["budget_seconds"] / batch["budget_seconds"], 1),
            "storage_requests": round(patch["storage_requests"]
                                      / batch["storage_requests"], 1)}}, indent=2))


if __name__ == "__main__":
    main()
