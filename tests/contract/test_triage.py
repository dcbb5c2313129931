"""The triage family's contract, on Azurite and on the in-memory fakes: bulk jobs (made
once, read per tenant and by page, guarded checkpoints, outcomes written again harmlessly)
and the per-tenant Defender call budget (per minute, per hour, holds, contention)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.storage.bulk_jobs import BulkItem, BulkJob, BulkJobs, Inflight, TenantWork
from shared.storage.call_budget import BATCH, CallBudget, Limits
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.memory.triage import MemoryBulkJobs, MemoryCallBudget
from shared.triage.model import Actor, Change

T1, T2 = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
ACTOR = Actor("oid-1", "Ann Analyst", "entra")
CHANGE = Change(status="Resolved", classification="FalsePositive",
                determination="NotMalicious", comment="bulk <b>closed</b>")


@pytest.fixture
def jobs(backend):
    return backend.repo(BulkJobs, "bulk", MemoryBulkJobs)


@pytest.fixture
def budget(backend):
    return backend.repo(CallBudget, "budget", MemoryCallBudget)


def _job(jobs: BulkJobs, job_id: str | None = None) -> BulkJob:
    job = BulkJob(job_id or uuid.uuid4().hex, ACTOR, CHANGE, 4, 2, "selection",
                  datetime(2026, 12, 1, 8, tzinfo=UTC))
    works = [TenantWork(job.job_id, T1, "Contoso", 3), TenantWork(job.job_id, T2, "Fabrikam",
                                                                   1, refused=1, finished=True,
                                                                   note="read-only")]
    items = [BulkItem(T1, "da1/odd#id?", before={"status": "New"}, title="<script>x"),
             BulkItem(T1, "da2"), BulkItem(T1, "da3"),
             BulkItem(T2, "db1", "refused", "read-only")]
    jobs.create(job, works, items)
    return job


def test_a_job_reads_back_whole(jobs):
    job = _job(jobs)
    got = jobs.get(job.job_id)
    assert got == job
    assert got.change.comment == "bulk <b>closed</b>"
    assert [w.tenant_id for w in jobs.works(job.job_id)] == [T1, T2]
    mine = jobs.items(job.job_id, T1)
    assert [i.alert_id for i in mine] == ["da1/odd#id?", "da2", "da3"]
    assert mine[0].before == {"status": "New"} and mine[0].title == "<script>x"
    assert [(i.alert_id, i.outcome) for i in jobs.items(job.job_id, T2)] == [("db1",
                                                                             "refused")]
    assert jobs.get(uuid.uuid4().hex) is None
    assert jobs.work(job.job_id, str(uuid.UUID(int=3))) is None


def test_a_job_is_made_once(jobs):
    job = _job(jobs)
    jobs.settle(job.job_id, [BulkItem(T1, "da2", "done")])
    with pytest.raises(AlreadyExists):
        _job(jobs, job.job_id)
    assert jobs.items(job.job_id, T1)[1].outcome == "done"  # not written over


def test_pages_of_alerts_cover_the_job_once(jobs):
    job = _job(jobs)
    seen, after = [], ""
    while True:
        items, after = jobs.page(job.job_id, after, limit=3)
        seen += [(i.tenant_id, i.alert_id) for i in items]
        if not after:
            break
    assert seen == [(T1, "da1/odd#id?"), (T1, "da2"), (T1, "da3"), (T2, "db1")]


def test_checkpoints_are_guarded(jobs):
    job = _job(jobs)
    mine, theirs = jobs.work(job.job_id, T1), jobs.work(job.job_id, T1)
    until = datetime(2026, 12, 1, 9, tzinfo=UTC)
    mine.inflight, mine.begun, mine.calls = Inflight(0, ["da1/odd#id?", "da2"], "batch",
                                                     until), 1, 1
    jobs.checkpoint(mine)
    jobs.checkpoint(mine)  # its own etag follows it
    with pytest.raises(StateChanged):
        jobs.checkpoint(theirs)
    back = jobs.work(job.job_id, T1)
    assert back.inflight == Inflight(0, ["da1/odd#id?", "da2"], "batch", until)
    assert (back.begun, back.calls, back.pending) == (1, 1, 3)


def test_outcomes_settle_and_settle_again(jobs):
    job = _job(jobs)
    done = [BulkItem(T1, "da1/odd#id?", "done"), BulkItem(T1, "da2", "failed", "404")]
    jobs.settle(job.job_id, done)
    jobs.settle(job.job_id, done)
    got = {i.alert_id: i for i in jobs.items(job.job_id, T1)}
    assert (got["da1/odd#id?"].outcome, got["da2"].outcome, got["da2"].detail) == (
        "done", "failed", "404")
    assert got["da1/odd#id?"].at is not None and got["da3"].at is None
    assert got["da1/odd#id?"].before == {"status": "New"}  # kept


def test_the_budget_allows_ten_a_minute(budget):
    now = datetime(2026, 12, 1, 8, tzinfo=UTC)
    waits = [budget.take(T1, "batch", BATCH, now + timedelta(seconds=i)) for i in range(11)]
    assert waits[:10] == [0.0] * 10
    assert waits[10] == pytest.approx(50.0)  # at 10 s: the first call leaves the minute at 60
    assert len(budget.spent(T1, "batch")) == 10
    assert budget.take(T2, "batch", BATCH, now) == 0.0  # another tenant's own budget
    assert budget.take(T1, "patch", Limits(100, 1500), now) == 0.0  # another kind
    assert budget.take(T1, "batch", BATCH, now + timedelta(seconds=61)) == 0.0


def test_the_budget_allows_so_many_an_hour(budget):
    now = datetime(2026, 12, 1, 8, tzinfo=UTC)
    hourly = Limits(100, 5)
    for i in range(5):
        assert budget.take(T1, "batch", hourly, now + timedelta(minutes=i)) == 0.0
    assert budget.take(T1, "batch", hourly, now + timedelta(minutes=10)) == pytest.approx(
        3000.0)
    assert budget.take(T1, "batch", hourly, now + timedelta(minutes=60, seconds=1)) == 0.0


def test_a_hold_stops_calls_until_it_ends(budget):
    now = datetime(2026, 12, 1, 8, tzinfo=UTC)
    budget.hold(T1, "batch", now + timedelta(seconds=30))
    budget.hold(T1, "batch", now + timedelta(seconds=10))  # an earlier end: kept the later
    assert budget.take(T1, "batch", BATCH, now) == pytest.approx(30.0)
    assert budget.spent(T1, "batch") == []
    assert budget.take(T1, "batch", BATCH, now + timedelta(seconds=30)) == 0.0


def test_a_write_that_lost_to_another_worker_is_retried(budget):
    now = datetime(2026, 12, 1, 8, tzinfo=UTC)
    budget.take(T1, "batch", BATCH, now)
    read = budget._read

    def racing(tenant_id, kind):  # another worker spends a call after each first read
        found = read(tenant_id, kind)
        if not racing.done:
            racing.done = True
            budget.take(T1, "batch", BATCH, now + timedelta(seconds=1))
        return found

    racing.done = False
    budget._read = racing
    assert budget.take(T1, "batch", BATCH, now + timedelta(seconds=2)) == 0.0
    del budget._read
    assert len(budget.spent(T1, "batch")) == 3
