"""Bulk triage on Azurite (jobs, budgets and tenants in real tables) against a Defender
at the edge that enforces its per-tenant limits: 300 alerts across 3 tenants resolved,
one tenant throttling, every alert resolved or with its reason, calls within budget.

Defender is tests/triage_fakes.FakeDefender (in process, virtual clock, its limits per
tenant; test_bulk_triage_simulator.py runs the same against the simulator); the queue is
a list delivered in virtual time, so waiting out
a minute's budget takes no wall time."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from types import SimpleNamespace

import pytest

from devtools.simulator.ratelimit import Limits
from shared.model import Tenant
from shared.storage.bulk_jobs import BulkJobs
from shared.storage.call_budget import CallBudget
from shared.storage.queues import BulkQueue
from shared.storage.tenants import TenantRepository
from shared.triage import bulk
from shared.triage.bulk import BulkStores, BulkTriage, Hooks, Target
from shared.triage.model import Actor, Change
from tests.contract.conftest import fresh_table
from tests.triage_fakes import Audit, Clock, FakeDefender, Queue, drain

RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="closed in bulk: <b>test</b>")


@pytest.fixture
def world(storage_env):
    clock = Clock()
    defender = FakeDefender(clock, limited=True)
    tenants = TenantRepository(fresh_table(storage_env, "tenants"))
    jobs = BulkJobs(fresh_table(storage_env, "bulk"))
    budget = CallBudget(fresh_table(storage_env, "budget"))
    queue, audit = Queue(), Audit()
    service = BulkTriage(BulkStores(jobs, budget, tenants, BulkQueue(queue)), defender,
                         Hooks(record=audit.record), token=lambda t: "token",
                         base=lambda t: f"https://{t.tenant_id}", clock=clock)
    return SimpleNamespace(clock=clock, defender=defender, tenants=tenants, budget=budget,
                           queue=queue, audit=audit, service=service)


def test_bulk_resolve_300_alerts_across_3_tenants_one_throttling(world, monkeypatch):
    clock, defender, tenants, service = world.clock, world.defender, world.tenants, world.service
    monkeypatch.setattr(bulk, "CHUNK", 7)  # 14 batch calls and 2 PATCHes a tenant
    ids = [str(uuid.uuid4()) for _ in range(3)]
    targets = []
    for n, tenant_id in enumerate(ids):
        tenants.add(Tenant(tenant_id, f"Customer {n} <x>", access="triage"))
        targets += [Target(tenant_id, a, {"status": "New"})
                    for a in defender.seed(tenant_id, 100)]
    throttling = ids[2]  # someone else spends most of its batch budget: 3 a minute left
    defender.tenant_limits[throttling] = {"batch": Limits(3, 500),
                                          "patch": Limits(100, 1500)}
    job = service.submit(Actor("oid-1", "Ann", "entra"), RESOLVE, targets)

    drain(world.queue, service.run, clock)

    status = service.status(job.job_id, limit=1000)
    assert status is not None and status.finished
    assert status.counts == {"total": 300, "done": 300, "refused": 0, "failed": 0,
                             "pending": 0}
    for tenant_id in ids:  # resolved in Defender, the comment added once
        for alert in defender.alerts[tenant_id].values():
            assert alert["status"] == "Resolved" and len(alert["comments"]) == 1
    entries = world.audit.entries.values()
    assert len(entries) == 300 and {e.outcome for e in entries} == {"done"}
    assert defender.refused > 0  # the throttling tenant was told to wait, and did
    assert all(w.finished and not w.note for w in status.works)
    # within budget: never more than 10 batch calls in any minute, per tenant
    for tenant_id in ids:
        times = [at for kind, t, at, _ in defender.calls if t == tenant_id and kind == "batch"]
        for i, at in enumerate(times):
            assert sum(1 for t in times[i:] if t < at + timedelta(seconds=60)) <= 10
        accepted = Counter(kind for kind, t, _, _ in defender.calls if t == tenant_id)
        assert accepted["patch"] == 2
    # the budget rows in storage agree with what was sent
    assert len(world.budget.spent(ids[0], "batch")) == 14
    # the throttled tenant did not hold back the others: they finished minutes earlier
    last = {t: max(at for _, tt, at, _ in defender.calls if tt == t) for t in ids}
    assert max(last[ids[0]], last[ids[1]]) + timedelta(minutes=2) < last[throttling]


def test_a_read_only_tenant_is_refused_with_its_reason_and_never_called(world):
    clock, defender, tenants, service = world.clock, world.defender, world.tenants, world.service
    ro, rw = str(uuid.uuid4()), str(uuid.uuid4())
    tenants.add(Tenant(ro, "Read Only", access="read", access_reason="granted Alert.Read.All"))
    tenants.add(Tenant(rw, "Writable", access="triage"))
    targets = ([Target(ro, a) for a in defender.seed(ro, 3)]
               + [Target(rw, a) for a in defender.seed(rw, 3)])
    job = service.submit(Actor("key-ci", "ci", "api"), RESOLVE, targets)
    drain(world.queue, service.run, clock)
    status = service.status(job.job_id)
    outcomes = {(i.tenant_id, i.outcome, i.detail) for i in status.items}
    assert outcomes == {(ro, "refused", "the tenant granted read-only access: granted "
                                        "Alert.Read.All"), (rw, "done", "")}
    assert {t for _, t, _, _ in defender.calls} == {rw}
