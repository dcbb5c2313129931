"""Bulk triage against the simulator over HTTPS (the real DefenderClient and tokens, its
batchUpdate, PATCH and rate limits), jobs, budgets, tenants and the audit trail in
Azurite: 300 alerts across 3 tenants, one throttling, each ends resolved in Defender or
with its reason, and no tenant's calls exceed batchUpdate's 10 a minute.

The queue is delivered in virtual time (tests/triage_fakes.drain) and the simulator's
clock is moved with it, so waiting out a minute of budget takes no wall time."""

from __future__ import annotations

from datetime import datetime

from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens
from shared.services import bulk_hooks
from shared.storage import tables
from shared.storage.audit import AuditTrail
from shared.storage.bulk_jobs import BulkJobs
from shared.storage.call_budget import CallBudget
from shared.storage.queues import BulkQueue
from shared.triage import bulk
from shared.triage.bulk import BulkStores, BulkTriage, Target
from shared.triage.model import Actor, Change
from tests.contract.conftest import fresh_table
from tests.triage_fakes import Clock, Queue, drain

READ_WRITE = {"https://api.securitycenter.microsoft.com": ["Alert.ReadWrite.All"]}
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="closed in bulk <b>x</b>")


class SimulatedTime(Clock):
    """The job's clock; moving it moves the simulator's by as much."""

    def __init__(self, sim) -> None:
        self.sim = sim
        super().__init__()

    @property
    def now(self) -> datetime:
        return self._now

    @now.setter
    def now(self, value: datetime) -> None:
        before = getattr(self, "_now", None)
        self._now = value
        if before is not None and value > before:
            self.sim.advance_clock((value - before).total_seconds())


def test_bulk_resolve_300_alerts_across_3_tenants_one_throttling(pipeline, monkeypatch):
    sim, settings = pipeline.sim, pipeline.settings
    monkeypatch.setattr(bulk, "CHUNK", 7)  # 14 batch calls and 2 PATCHes a tenant
    clock, queue = SimulatedTime(sim), Queue()
    service = BulkTriage(
        BulkStores(BulkJobs(fresh_table(pipeline.storage, "bulk")),
                   CallBudget(fresh_table(pipeline.storage, "budget")), pipeline.tenants,
                   BulkQueue(queue)),
        DefenderClient(10, settings.identity.ca_bundle), bulk_hooks(pipeline.storage),
        token=lambda t: Tokens(settings.identity).token(t.tenant_id),
        base=lambda t: settings.identity.api_base(t.region), clock=clock)
    tenants, targets = [], []
    for n in range(3):
        tenant = pipeline.add_tenant(f"Bulk Customer {n} <x>", alerts=100)
        sim.grant(tenant.tenant_id, pipeline.simulator.config.client_id, READ_WRITE)
        pipeline.tenants.set_access(tenant.tenant_id, "triage", "")
        tenants.append(tenant.tenant_id)
        targets += [Target(tenant.tenant_id, a["id"]) for a in sim.alerts(tenant.tenant_id)]
    throttling = tenants[2]  # Defender tells it to wait, three times
    sim.fault(throttling, "status", count=3, status=429, retry_after=40)
    sim.counters(reset=True)

    job = service.submit(Actor("oid-ann", "Ann", "entra"), RESOLVE, targets)
    drain(queue, service.run, clock)

    status = service.status(job.job_id, limit=1000)
    assert status is not None and status.finished
    assert status.counts == {"total": 300, "done": 300, "refused": 0, "failed": 0,
                             "pending": 0}, [i for i in status.items if i.outcome != "done"]
    for tenant_id in tenants:  # resolved in the simulator, the comment added once
        for alert in sim.alerts(tenant_id):
            assert (alert["status"], alert["classification"]) == ("Resolved", "FalsePositive")
            assert [c["comment"] for c in alert["comments"]] == [RESOLVE.comment]
    counters = sim.counters()["tenants"]
    assert counters[throttling]["throttled"] == 3  # told to wait, and it waited
    for tenant_id in tenants[:2]:  # the minimum: 100 alerts in chunks of 7 is 14 + 2
        assert (counters[tenant_id]["batch_updates"], counters[tenant_id]["patches"]) \
            == (14, 2), counters[tenant_id]
    sent = counters[throttling]["batch_updates"] + counters[throttling]["patches"]
    assert sent == 16 + 3, counters[throttling]  # the three it was told to wait on, again
    assert sim.counters()["throttled"] == 3  # never over the simulator's own limits
    audit = AuditTrail(tables.table(pipeline.storage, tables.AUDIT_TRAIL))
    entries = audit.for_alert(throttling, targets[-1].alert_id)
    assert [(e.outcome, e.actor.name, e.batch_id or job.job_id) for e in entries] == [
        ("done", "Ann", job.job_id)]

