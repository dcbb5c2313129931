"""Bulk triage on the fakes: refusals up front, chunking (batchUpdate or PATCH), each
tenant's budget, a throttled tenant re-queued without holding back the others, and
exactly-once outcomes and audit entries under redelivery and a worker killed between
its steps."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

import pytest

from shared.messages import BulkTriageRequest
from shared.microsoft.defender import DefenderError, Forbidden, Throttled
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.storage.memory.tenants import MemoryTenants
from shared.storage.memory.triage import MemoryBulkJobs, MemoryCallBudget
from shared.storage.queues import BulkQueue
from shared.triage import bulk
from shared.triage.bulk import BadSelection, BulkStores, BulkTriage, Hooks, Target
from shared.triage.model import Actor, Change, InvalidChange
from tests.triage_fakes import Audit, Clock, FakeDefender, Killed, Queue

ACTOR = Actor("key-ci", "ci", "api")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious")
COMMENTED = Change(status="Resolved", comment="closed in bulk by the SOC")
A, B, C = (str(uuid.UUID(int=n)) for n in (1, 2, 3))


class World:
    def __init__(self) -> None:
        self.clock = Clock()
        self.defender = FakeDefender(self.clock)
        self.tenants = MemoryTenants()
        self.jobs, self.budget = MemoryBulkJobs(), MemoryCallBudget()
        self.queue, self.audit = Queue(), Audit()
        self.expected: list[tuple[str, list[str]]] = []
        self.forbidden: list[tuple[str, str]] = []
        self.service = BulkTriage(
            BulkStores(self.jobs, self.budget, self.tenants, BulkQueue(self.queue)),
            self.defender, Hooks(record=self.audit.record,
                                 expect=lambda t, ids, f, a: self.expected.append((t, ids)),
                                 forbidden=lambda t, why: self.forbidden.append((t, why))),
            token=lambda t: "token", base=lambda t: f"https://{t.tenant_id}", clock=self.clock)

    def tenant(self, tenant_id: str, n: int, access: str = "triage",
               status: TenantStatus = TenantStatus.ACTIVE) -> list[Target]:
        self.tenants.add(Tenant(tenant_id, f"Tenant {tenant_id[-1]}", status=status,
                                access=access))
        return [Target(tenant_id, a, {"status": "New"}) for a in self.defender.seed(tenant_id,
                                                                                   n)]

    def drain(self, max_rounds: int = 1000) -> int:
        """Deliver queued messages as the queue would (a delayed one once its time came,
        advancing the clock when only delayed ones are left); the rounds it took."""
        due: list[tuple[datetime, BulkTriageRequest]] = []
        rounds = 0
        while rounds < max_rounds:
            due += [(self.clock() + timedelta(seconds=d or 0), m) for m, d in self.queue.sent]
            self.queue.sent.clear()
            if not due:
                return rounds
            due.sort(key=lambda x: x[0])
            at, message = due.pop(0)
            if at > self.clock():
                self.clock.now = at
            self.service.run(message)
            rounds += 1
        raise AssertionError("did not finish")

    def status(self, job_id: str) -> bulk.JobStatus:
        status = self.service.status(job_id, limit=10_000)
        assert status is not None
        return status


@pytest.fixture
def world() -> World:
    return World()


def test_an_invalid_change_or_too_many_alerts_write_nothing(world):
    targets = world.tenant(A, 3)
    with pytest.raises(InvalidChange):
        world.service.submit(ACTOR, Change(classification="FalsePositive",
                                           determination="Malware"), targets)
    with pytest.raises(BadSelection, match="at most 5,000"):
        world.service.submit(ACTOR, RESOLVE, [Target(A, f"x{i}") for i in range(5_001)])
    assert world.jobs.headers == {} and world.queue.sent == [] and world.defender.calls == []


def test_tenants_that_may_not_be_written_are_refused_up_front(world):
    targets = (world.tenant(A, 2, access="read") + world.tenant(B, 2, status=TenantStatus.PAUSED)
               + world.tenant(C, 3) + [Target(str(uuid.UUID(int=9)), "ghost")])
    job = world.service.submit(ACTOR, RESOLVE, targets)
    assert [m.tenant_id for m, _ in world.queue.sent] == [C]  # only C has work to do
    status = world.status(job.job_id)
    reasons = {i.tenant_id: i.detail for i in status.items if i.outcome == "refused"}
    assert reasons[A] == "the tenant granted read-only access"
    assert reasons[B] == "the tenant is paused"
    assert reasons[str(uuid.UUID(int=9))] == "no such tenant"
    assert status.counts == {"total": 8, "done": 0, "refused": 5, "failed": 0, "pending": 3}
    assert Counter(e.outcome for e in world.audit.entries.values()) == {"refused": 5}
    world.drain()
    assert world.status(job.job_id).counts["done"] == 3 and world.status(job.job_id).finished
    assert world.defender.calls == [("batch", C, world.clock(), 3)]


def test_chunks_are_batch_calls_and_a_few_left_go_as_patches(world, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 50)
    targets = world.tenant(A, 102) + world.tenant(B, 2) + world.tenant(C, 1)
    job = world.service.submit(ACTOR, RESOLVE, targets)
    world.drain()
    calls = Counter((kind, tenant, n) for kind, tenant, _, n in world.defender.calls)
    assert calls == {("batch", A, 50): 2, ("patch", A, 1): 2, ("patch", B, 1): 2,
                     ("patch", C, 1): 1}
    assert all(a["status"] == "Resolved" for t in (A, B, C)
               for a in world.defender.alerts[t].values())
    status = world.status(job.job_id)
    assert status.finished and status.counts["done"] == 105
    assert {w.tenant_id: w.calls for w in status.works} == {A: 4, B: 2, C: 1}
    assert len(world.audit.entries) == 105
    entry = world.audit.entries[f"{job.job_id}:{A}:{targets[0].alert_id}"]
    assert (entry.outcome, entry.before, entry.after, entry.batch_id) == (
        "done", {"status": "New"}, RESOLVE.fields(), job.job_id)
    # OwnChanges heard of every alert before Defender was asked
    assert sorted(a for _, ids in world.expected for a in ids) == sorted(
        t.alert_id for t in targets)


def test_a_tenant_keeps_within_its_budget_and_comes_back_later(world, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 10)
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 250))  # 25 batch calls
    world.service.run(world.queue.sent.pop(0)[0])
    assert len(world.defender.calls) == 10
    (message, delay), = world.queue.sent
    assert message == BulkTriageRequest(job.job_id, A) and 55 <= delay <= 61
    assert "batch budget spent" in world.jobs.work(job.job_id, A).note
    world.drain()
    times = [at for kind, _, at, _ in world.defender.calls if kind == "batch"]
    assert len(times) == 25
    for i, at in enumerate(times):  # never more than 10 in any minute
        assert sum(1 for t in times[i:] if t < at + timedelta(seconds=60)) <= 10
    assert world.status(job.job_id).counts["done"] == 250


def test_a_throttled_tenant_waits_and_does_not_hold_back_the_others(world):
    world.defender.fail[A] = [Throttled(45)]
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 5) + world.tenant(B, 5))
    first = list(world.queue.sent)
    world.queue.sent.clear()
    for message, _ in first:
        world.service.run(message)
    assert world.status(job.job_id).counts["done"] == 5  # B is done
    (message, delay), = world.queue.sent  # A put its own message back
    assert message.tenant_id == A and delay == 45
    assert "throttled by Defender" in world.jobs.work(job.job_id, A).note
    assert world.budget.take(A, "batch", bulk.call_budget.BATCH, world.clock()) == 45
    world.drain()
    assert world.status(job.job_id).counts["done"] == 10
    retried = [at for kind, t, at, _ in world.defender.calls if t == A]
    assert retried[1] - retried[0] >= timedelta(seconds=45)


def test_redelivered_messages_send_nothing_again(world):
    job = world.service.submit(ACTOR, COMMENTED, world.tenant(A, 5))
    message = world.queue.sent[0][0]
    world.drain()
    for _ in range(3):
        world.service.run(message)
    assert len(world.defender.calls) == 1
    assert all(len(a["comments"]) == 1 for a in world.defender.alerts[A].values())
    assert len(world.audit.entries) == 5
    again = world.service.submit(ACTOR, COMMENTED, world.tenant(B, 1), job_id=job.job_id)
    assert again.job_id == job.job_id and again.total == 5  # the same form sent twice


def test_two_copies_at_once_send_once(world):
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 5))
    message = world.queue.sent.pop(0)[0]

    def second_copy(tenant_id, ids, fields, actor):  # arrives while the first is sending
        world.expected.append((tenant_id, ids))
        if len(world.expected) == 1:
            world.service.run(message)

    world.service.hooks.expect = second_copy
    world.service.run(message)
    assert len(world.defender.calls) == 1
    (_, delay), = world.queue.sent  # the copy waits out the sender's lease
    assert delay == bulk.LEASE.total_seconds() + 1
    world.drain()
    assert len(world.defender.calls) == 1 and world.status(job.job_id).counts["done"] == 5


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_worker_killed_on_the_call_sends_the_chunk_at_most_once(world, when):
    """Killed as it sent (Defender did not get it) or after (it did): the next delivery
    waits out the lease, reads the alerts back and sends only what did not arrive."""
    world.defender.fail[A] = [(when, Killed())]
    job = world.service.submit(ACTOR, COMMENTED, world.tenant(A, 5))
    message = world.queue.sent.pop(0)[0]
    with pytest.raises(Killed):
        world.service.run(message)
    world.service.run(message)  # redelivered at once: the lease is live
    assert len(world.defender.calls) == 1
    world.clock.advance(bulk.LEASE.total_seconds())
    world.service.run(message)
    world.drain()
    assert len(world.defender.calls) == (2 if when == "before" else 1)
    assert all(len(a["comments"]) == 1 for a in world.defender.alerts[A].values())
    status = world.status(job.job_id)
    assert status.finished and status.counts["done"] == 5 and len(world.audit.entries) == 5


def test_a_worker_killed_between_the_audit_and_the_outcomes_records_once(world):
    world.audit.kill_after = 3
    job = world.service.submit(ACTOR, COMMENTED, world.tenant(A, 5))
    message = world.queue.sent.pop(0)[0]
    with pytest.raises(Killed):
        world.service.run(message)
    world.clock.advance(bulk.LEASE.total_seconds())
    world.service.run(message)
    assert len(world.defender.calls) == 1 and len(world.audit.entries) == 5
    assert all(len(a["comments"]) == 1 for a in world.defender.alerts[A].values())
    assert world.status(job.job_id).counts["done"] == 5


@pytest.mark.parametrize(("change", "outcome", "calls"), [(RESOLVE, "done", 2),
                                                          (COMMENTED, "failed", 1)])
def test_without_a_read_back_only_a_change_without_comment_is_sent_again(
        world, change, outcome, calls):
    world.defender.fail[A] = [("after", Killed())]
    world.defender.readable = False
    job = world.service.submit(ACTOR, change, world.tenant(A, 5))
    message = world.queue.sent.pop(0)[0]
    with pytest.raises(Killed):
        world.service.run(message)
    world.clock.advance(bulk.LEASE.total_seconds())
    world.service.run(message)
    assert len(world.defender.calls) == calls
    items = world.status(job.job_id).items
    assert {i.outcome for i in items} == {outcome}
    if outcome == "failed":
        assert "not sent twice" in items[0].detail


def test_a_transient_failure_is_retried_by_the_host_and_found_out(world):
    world.defender.fail[A] = [("after", DefenderError("Defender API 503", 503))]
    job = world.service.submit(ACTOR, COMMENTED, world.tenant(A, 5))
    message = world.queue.sent.pop(0)[0]
    with pytest.raises(DefenderError):
        world.service.run(message)
    world.service.run(message)  # the host's retry: no lease to wait out
    assert len(world.defender.calls) == 1
    assert world.status(job.job_id).counts["done"] == 5


def test_a_403_refuses_the_rest_and_marks_the_tenant(world):
    world.defender.fail[A] = [Forbidden("Missing application roles", 403, transient=False)]
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 5))
    world.drain()
    items = world.status(job.job_id).items
    assert {i.outcome for i in items} == {"refused"}
    assert "403" in items[0].detail and world.forbidden[0][0] == A


def test_an_alert_defender_does_not_know_fails_with_the_reason(world):
    targets = [*world.tenant(A, 1), Target(A, "gone")]
    job = world.service.submit(ACTOR, RESOLVE, targets)
    world.drain()
    outcome = {i.alert_id: (i.outcome, i.detail) for i in world.status(job.job_id).items}
    assert outcome["gone"][0] == "failed" and "404" in outcome["gone"][1]
    assert outcome[targets[0].alert_id] == ("done", "")
    assert world.audit.entries[f"{job.job_id}:{A}:gone"].outcome == "failed"


def test_a_tenant_paused_after_the_job_was_made_is_refused_then(world):
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 3))
    world.tenants.pause(A, "customer asked")
    world.drain()
    assert {i.detail for i in world.status(job.job_id).items} == {"the tenant is paused"}
    assert world.defender.calls == []


def test_status_pages_through_the_alerts(world):
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 7) + world.tenant(B, 5))
    first = world.service.status(job.job_id, limit=5)
    assert len(first.items) == 5 and first.next_after
    second = world.service.status(job.job_id, first.next_after, limit=50)
    assert len(second.items) == 7 and not second.next_after
    assert world.service.status(uuid.uuid4().hex) is None


def test_a_tenant_without_a_token_is_refused_and_nothing_is_left_in_flight(world):
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 3) + world.tenant(B, 3))

    def token(tenant):
        if tenant.tenant_id == A:
            raise TokenError("AADSTS7000229", 7000229, TenantStatus.CONSENT_REVOKED,
                             "consent_revoked")
        return "token"

    world.service.token = token
    world.drain()
    items = {i.alert_id: i for i in world.status(job.job_id).items}
    assert {i.detail for i in items.values() if i.tenant_id == A} == {
        "no token for the tenant: consent_revoked"}
    assert world.jobs.work(job.job_id, A).inflight is None
    assert world.status(job.job_id).counts["done"] == 3


def test_an_app_wide_token_failure_is_retried_by_the_host(world):
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 3))
    message = world.queue.sent.pop(0)[0]

    def broken(tenant):
        raise TokenError("AADSTS7000215", 7000215, None, "bad_client_secret", app_wide=True)

    world.service.token = broken
    with pytest.raises(TokenError):
        world.service.run(message)
    assert world.jobs.work(job.job_id, A).inflight is None  # nothing in flight
    world.service.token = lambda t: "token"
    world.service.run(message)  # the host's retry
    assert world.status(job.job_id).counts["done"] == 3


def test_a_message_given_up_on_fails_what_is_left_and_finishes_the_job(world, monkeypatch):
    monkeypatch.setattr(bulk, "CHUNK", 3)
    world.defender.fail[A] = [("after", DefenderError("Defender API 503", 503))]
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 3) + world.tenant(B, 2))
    first = world.queue.sent.pop(0)[0]
    with pytest.raises(DefenderError):
        world.service.run(first)
    world.service.give_up(first, "bulk triage failed on every attempt")
    world.service.give_up(first, "again")  # a second copy changes nothing
    world.drain()
    status = world.status(job.job_id)
    assert status.finished and status.counts == {"total": 5, "done": 2, "refused": 0,
                                                 "failed": 3, "pending": 0}
    details = {i.detail for i in status.items if i.outcome == "failed"}
    assert details == {"bulk triage failed on every attempt; Defender may have applied it "
                       "(the call's answer was not recorded)"}


def test_every_patch_is_charged_to_the_budget_so_defender_never_throttles(world, monkeypatch):
    """Sent by PATCH (a forced baseline here), 150 alerts of one tenant take 150 units of
    its 100-a-minute PATCH budget: the job waits out the minute itself, Defender never
    answers 429."""
    monkeypatch.setattr(bulk, "PATCH_UP_TO", 10_000)
    world.defender.limited = True
    job = world.service.submit(ACTOR, RESOLVE, world.tenant(A, 150))
    world.drain(max_rounds=5000)
    assert world.status(job.job_id).counts["done"] == 150
    assert world.defender.refused == 0
    assert len(world.budget.spent(A, "patch")) == 150
