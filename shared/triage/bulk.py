"""Bulk triage: one change applied to many alerts across tenants, within each tenant's
Defender budget, each alert's outcome recorded once.

A job (storage/bulk_jobs.py) is split per tenant; one queue message per tenant
(`BulkTriageRequest`) has a worker send that tenant's alerts in chunks: `batchUpdate` of
up to CHUNK ids (10 calls a minute, 500 an hour per tenant), or PATCH per alert when at
most PATCH_UP_TO are left (100 a minute: a lone alert does not spend a batch call). The
budget is a row per tenant in storage (storage/call_budget.py): every worker spends the
same one. A tenant out of budget, or throttled by Defender (429), puts its own message
back with a delay and returns; the other tenants' messages go on.

Exactly once, under redelivery and a worker killed between any two lines:
1. Before a call the chunk is marked in flight on the tenant's row (its ids, how, and a
   lease: until when its sender may still be on the call). The write is etag-guarded, so
   two copies of a message cannot both send; a copy that finds a live lease waits it out.
2. After the call: the audit entries (action id = job, tenant, alert: recorded once),
   then the alerts' outcomes, then the tenant's row, in flight cleared.
3. A worker that finds a chunk in flight past its lease does not know whether Defender
   got it. Alerts already settled were sent. For the rest it asks Defender (GET each
   alert): a change that shows is settled as done without sending again; one that does
   not is sent again. Without that answer a change without a comment is sent again
   (batchUpdate sets fields: sending twice leaves the same alert) and a change with a
   comment fails with the reason rather than add the comment twice.
So a chunk whose batchUpdate succeeded is never sent again, and an alert's audit entry
and outcome are written once whatever is redelivered.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.messages import BulkTriageRequest
from shared.microsoft.defender import DefenderError, Forbidden, NotFound, Throttled
from shared.microsoft.graph_security import GRAPH_SCOPE, GraphSecurityClient
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.storage import call_budget
from shared.storage.bulk_jobs import BulkItem, BulkJob, BulkJobs, Inflight, TenantWork
from shared.storage.call_budget import CallBudget
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.queues import BulkQueue
from shared.storage.tenants import TenantRepository
from shared.triage import graph_change
from shared.triage.model import Actor, AuditEntry, Change

log = logging.getLogger("mssp_hub.triage")

MAX_ALERTS = 5_000  # per job: a bigger selection is refused, with this number
CHUNK = 500  # alert ids per batchUpdate: no limit is documented; this keeps a request
# ~25 KB and the chunk's ids in one table property (the in-flight record)
PATCH_UP_TO = 2  # this few left: PATCH each (its budget is ten times the batch's)
CALL_TIMEOUT = 60  # read timeout of a write call (the wiring's DefenderClient)
LEASE = timedelta(seconds=150)  # a sender's hold on its chunk: > connect 10 s + read 60 s
PAGE = 100  # alerts per page of a job's status


class BadSelection(ValueError):
    """A selection that cannot make a job: empty, over MAX_ALERTS, or a filter that
    reaches too far to count or names a value the alerts list does not know."""


class Writes(Protocol):
    """Defender's write endpoints (shared/microsoft/defender.py's DefenderClient)."""

    def batch_update(self, base: str, token: str, alert_ids: list[str],
                     body: dict[str, Any]) -> None: ...

    def update_alert(self, base: str, token: str, alert_id: str, body: dict[str, Any]
                     ) -> dict[str, Any]: ...

    def get_alert(self, base: str, token: str, alert_id: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Target:
    """An alert to change, with what the hub knew of it (for the audit and the page)."""

    tenant_id: str
    alert_id: str
    before: dict[str, Any] = field(default_factory=dict)
    title: str = ""


@dataclass
class BulkStores:
    jobs: BulkJobs
    budget: CallBudget
    tenants: TenantRepository
    queue: BulkQueue


@dataclass
class Hooks:
    """What the other triage parts do around a call (the wiring gives them):
    `record` the audit entries (AuditTrail), `expect` an own change before Defender is
    asked and `store` the alert PATCH answered (OwnChanges), `forbidden` a tenant whose
    Defender refused a write (403: read-only from now on, with the reason)."""

    record: Callable[[list[AuditEntry]], None]
    expect: Callable[[str, list[str], dict[str, Any], Actor], None] | None = None
    store: Callable[..., Any] | None = None  # (tenant_id, alert, actor[, schema=])
    forbidden: Callable[[str, str], None] | None = None


@dataclass
class JobStatus:
    job: BulkJob
    works: list[TenantWork]
    items: list[BulkItem]  # one page
    next_after: str  # the next page's token, "" on the last

    @property
    def counts(self) -> dict[str, int]:
        total = Counter({"total": 0, "done": 0, "refused": 0, "failed": 0})
        for w in self.works:
            total.update(total=w.total, done=w.done, refused=w.refused, failed=w.failed)
        total["pending"] = total["total"] - total["done"] - total["refused"] - total["failed"]
        return dict(total)

    @property
    def finished(self) -> bool:
        return all(w.finished for w in self.works)


def refusal(tenant: Tenant | None) -> str:
    """Why no change may be written to this tenant's Defender ("" when it may)."""
    if tenant is None:
        return "no such tenant"
    if tenant.status != TenantStatus.ACTIVE:
        return f"the tenant is {tenant.status.value.replace('_', ' ')}"
    if tenant.access != "triage":
        return ("the tenant granted read-only access"
                + (f": {tenant.access_reason}" if tenant.access_reason else ""))
    return ""


def applied(alert: dict[str, Any], change: Change) -> bool:
    """Whether Defender's copy of an alert shows `change` (its fields, and its comment
    among the alert's comments)."""
    if any(alert.get(name) != value for name, value in change.fields().items()):
        return False
    if change.comment is None:
        return True
    return any((c or {}).get("comment") == change.comment for c in alert.get("comments") or [])


def _graph(tenant: Tenant) -> bool:
    return tenant.source == graph_change.GRAPH


def graph_calls(change: Change) -> int:
    """Graph calls one alert's change takes: a PATCH for the fields, a POST for the
    comment."""
    return (1 if change.fields() else 0) + (1 if change.comment is not None else 0)


def new_job_id() -> str:
    return uuid.uuid4().hex


class BulkTriage:
    def __init__(self, stores: BulkStores, defender: Writes, hooks: Hooks, *,
                 token: Callable[..., str], base: Callable[[Tenant], str],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 graph: GraphSecurityClient | None = None) -> None:
        self.graph = graph  # `graph` tenants' writes: a PATCH (and a POST) per alert
        self.jobs, self.budget = stores.jobs, stores.budget
        self.tenants, self.queue = stores.tenants, stores.queue
        self.defender, self.hooks = defender, hooks
        self.token, self.base, self.clock = token, base, clock

    # a job is asked for ---------------------------------------------------------------------
    def submit(self, actor: Actor, change: Change, targets: Sequence[Target], *,
               job_id: str | None = None, source: str = "selection") -> BulkJob:
        """Make the job and queue its tenants. InvalidChange or BadSelection before anything
        is written. With the `job_id` of a job that exists (a form or request sent
        twice), that job, its tenants queued again (a redelivered message is harmless)."""
        change.validate()
        unique = list({(t.tenant_id, t.alert_id): t for t in targets}.values())
        if len(unique) > MAX_ALERTS:
            raise BadSelection(f"{len(unique):,} alerts selected; a bulk action takes at most "
                          f"{MAX_ALERTS:,}: narrow the selection or the filter")
        if not unique:
            raise BadSelection("no alerts selected")
        job_id = job_id or new_job_id()
        by_tenant: dict[str, list[Target]] = {}
        for target in unique:
            by_tenant.setdefault(target.tenant_id, []).append(target)
        works, items = [], []
        for tenant_id, chosen in by_tenant.items():
            tenant = self.tenants.get(tenant_id)
            why = refusal(tenant)
            works.append(TenantWork(job_id, tenant_id, tenant.display_name if tenant else "",
                                    len(chosen), refused=len(chosen) if why else 0,
                                    finished=bool(why), note=why))
            items += [BulkItem(tenant_id, t.alert_id, "refused" if why else "pending", why,
                               t.before, t.title) for t in chosen]
        job = BulkJob(job_id, actor, change, len(unique), len(by_tenant), source,
                      self.clock())
        try:
            self.jobs.create(job, works, items)
        except AlreadyExists:
            existing = self.jobs.get(job_id)
            if existing is None:
                raise
            job, works = existing, self.jobs.works(job_id)
            items = [i for w in works if w.finished and w.refused == w.total
                     for i in self.jobs.items(job_id, w.tenant_id)]
        self.audit(job, [i for i in items if i.outcome == "refused"])
        for work in works:
            if not work.finished:
                self.queue.request(BulkTriageRequest(job_id, work.tenant_id))
        return job

    # the job as it stands -------------------------------------------------------------------
    def status(self, job_id: str, after: str = "", limit: int = PAGE) -> JobStatus | None:
        job = self.jobs.get(job_id)
        if job is None:
            return None
        items, next_after = self.jobs.page(job_id, after, limit)
        return JobStatus(job, self.jobs.works(job_id), items, next_after)

    # a tenant's part, from its queue message ------------------------------------------------
    def run(self, request: BulkTriageRequest) -> None:
        job = self.jobs.get(request.job_id)
        work = self.jobs.work(request.job_id, request.tenant_id)
        if job is None or work is None or work.finished:
            return  # nothing (more) to do: a copy of a message whose work is done
        try:
            _TenantRun(self, job, work).go()
        except StateChanged:
            log.info("bulk job %s, tenant %s: another worker is on it", job.job_id,
                     work.tenant_id)

    def give_up(self, request: BulkTriageRequest, why: str) -> None:
        """The host gave up on the tenant's message (poison): its alerts still pending
        fail with `why`, so the job finishes and says so."""
        job = self.jobs.get(request.job_id)
        work = self.jobs.work(request.job_id, request.tenant_id)
        if job is None or work is None or work.finished:
            return
        run = _TenantRun(self, job, work)
        unsure = set(work.inflight.ids) if work.inflight else set()
        run._settle(run._mark([a for a in run.pending if a in unsure], "failed",
                              f"{why}; Defender may have applied it (the call's answer "
                              "was not recorded)"))
        run._settle(run._mark(run.pending, "failed", why))
        run._finish(why)

    def audit(self, job: BulkJob, items: Iterable[BulkItem],
               after: dict[str, Any] | None = None) -> None:
        entries = [AuditEntry(
            action_id=f"{job.job_id}:{i.tenant_id}:{i.alert_id}", at=i.at or self.clock(),
            actor=job.actor, tenant_id=i.tenant_id, alert_id=i.alert_id,
            change=job.change.body(), before=i.before,
            after=(after if after is not None else job.change.fields())
            if i.outcome == "done" else {}, outcome=i.outcome, detail=i.detail,
            batch_id=job.job_id) for i in items]
        if entries:
            self.hooks.record(entries)

    def requeue(self, work: TenantWork, seconds: float) -> None:
        delay = max(1, math.ceil(seconds))
        self.queue.request(BulkTriageRequest(work.job_id, work.tenant_id), delay=delay)


class _TenantRun:
    """One delivery of a tenant's message: its chunks until done, out of budget or
    throttled."""

    def __init__(self, service: BulkTriage, job: BulkJob, work: TenantWork) -> None:
        self.s, self.job, self.work = service, job, work
        self.jobs = service.jobs
        self.items = {i.alert_id: i for i in self.jobs.items(job.job_id, work.tenant_id)}

    @property
    def pending(self) -> list[str]:
        return [a for a, i in self.items.items() if i.outcome == "pending"]

    def go(self) -> None:
        tenant = self.s.tenants.get(self.work.tenant_id)
        why = refusal(tenant)
        if why:
            return self._refuse_rest(why)
        assert tenant is not None
        if self.work.inflight is not None:
            lease = (self.work.inflight.until - self.s.clock()).total_seconds()
            if lease > 0:  # its sender may still be on the call
                return self.s.requeue(self.work, lease + 1)
            self._find_out(tenant)
        while self.pending:
            if not self._send_chunk(tenant):
                return
        self._finish("")

    # steps --------------------------------------------------------------------------------
    def _settle(self, items: list[BulkItem], after: dict[str, Any] | None = None) -> None:
        """Audit, then outcomes; the tenant's counts follow in the next checkpoint."""
        now = self.s.clock()
        for item in items:
            item.at = now
        self.s.audit(self.job, items, after)
        self.jobs.settle(self.job.job_id, items)
        counts = Counter(i.outcome for i in self.items.values())
        self.work.done, self.work.refused, self.work.failed = (
            counts["done"], counts["refused"], counts["failed"])

    def _mark(self, ids: Iterable[str], outcome: str, detail: str) -> list[BulkItem]:
        marked = []
        for alert_id in ids:
            item = self.items[alert_id]
            item.outcome, item.detail = outcome, detail
            marked.append(item)
        return marked

    def _finish(self, note: str) -> None:
        self.work.inflight, self.work.note, self.work.finished = None, note, True
        self.jobs.checkpoint(self.work)

    def _refuse_rest(self, why: str) -> None:
        self._settle(self._mark(self.pending, "refused", why))
        self._finish(why)

    def _find_out(self, tenant: Tenant) -> None:
        """A chunk was in flight when its sender stopped: did Defender get it?"""
        inflight = self.work.inflight
        assert inflight is not None
        unknown = [a for a in inflight.ids if self.items.get(a) and
                   self.items[a].outcome == "pending"]
        shown: list[str] = []
        asked = False
        try:
            if _graph(tenant):
                token = self.s.token(tenant, GRAPH_SCOPE)
            else:
                base, token = self.s.base(tenant), self.s.token(tenant)
            for alert_id in unknown:
                try:
                    if _graph(tenant):
                        assert self.s.graph is not None
                        shows = graph_change.shows(self.s.graph.get_alert(token, alert_id),
                                                   self.job.change)
                    else:
                        alert = self.s.defender.get_alert(base, token, alert_id)
                        shows = alert is not None and applied(alert, self.job.change)
                except NotFound:
                    shows = False
                if shows:
                    shown.append(alert_id)
            asked = True
        except Exception as exc:  # any failure: decide without the answer
            log.warning("bulk job %s: could not read back %d alerts of %s: %s",
                        self.job.job_id, len(unknown), tenant.tenant_id, exc)
        self._settle(self._mark(shown, "done", "confirmed in Defender after the sender "
                                               "stopped"))
        if not asked and self.job.change.comment is not None:
            self._settle(self._mark([a for a in unknown if a not in shown], "failed",
                                    "the worker stopped during the call: the comment may be "
                                    "on the alert already, so it was not sent twice"))
        self.work.inflight = None
        self.jobs.checkpoint(self.work)

    def _send_chunk(self, tenant: Tenant) -> bool:
        """Send the next chunk; False when this delivery stops (re-queued)."""
        pending = self.pending
        graph = _graph(tenant)
        via = "graph" if graph else "patch" if len(pending) <= PATCH_UP_TO else "batch"
        # one budget unit is one call: a PATCH carries one alert, a batch up to CHUNK;
        # Graph has no batch endpoint: one alert, one call per part of the change
        ids = pending[:CHUNK] if via == "batch" else pending[:1]
        limits = {"patch": call_budget.PATCH, "batch": call_budget.BATCH,
                  "graph": call_budget.GRAPH}[via]
        calls = graph_calls(self.job.change) if graph else 1
        for _ in range(calls):
            wait = self.s.budget.take(tenant.tenant_id, via, limits, self.s.clock())
            if wait > 0:
                return self._pause(f"{via} budget spent", wait)
        try:  # before the chunk is marked: no token, nothing in flight
            base = "" if graph else self.s.base(tenant)
            token = self.s.token(tenant, GRAPH_SCOPE) if graph else self.s.token(tenant)
        except TokenError as exc:
            if exc.status is None:
                raise  # the app's credential or Entra: the host retries the message
            self._refuse_rest(f"no token for the tenant: {exc.reason}")
            return False
        self.work.inflight = Inflight(self.work.begun, ids, via, self.s.clock() + LEASE)
        self.work.begun += 1
        self.work.calls += 1 if via == "batch" else calls * len(ids)
        self.work.note = ""
        self.jobs.checkpoint(self.work)  # StateChanged: another copy is on this tenant
        change, actor = self.job.change, self.job.actor
        if self.s.hooks.expect is not None:
            self.s.hooks.expect(tenant.tenant_id, ids, graph_change.canonical(change)
                                if graph else change.fields(), actor)
        try:
            if graph:
                self._graph_each(tenant, token, ids)
            elif via == "batch":
                self.s.defender.batch_update(base, token, ids, change.body())
                self._settle(self._mark(ids, "done", ""))
            else:
                self._patch_each(tenant, base, token, ids)
        except Throttled as exc:
            until = self.s.clock() + timedelta(seconds=exc.retry_after)
            self.s.budget.hold(tenant.tenant_id, via, until)
            return self._pause("throttled by " + ("Microsoft Graph" if graph else "Defender"),
                               exc.retry_after)
        except Forbidden as exc:
            why = (f"Microsoft Graph refused the write (403): {exc}" if graph
                   else f"Defender refused the write (403): {exc}")
            self._settle(self._mark(self.pending, "refused", why))
            if self.s.hooks.forbidden is not None:
                self.s.hooks.forbidden(tenant.tenant_id, why)
            self._finish(why)
            return False
        except DefenderError as exc:
            if exc.transient:  # it may have reached Defender: the next delivery finds out
                self.work.inflight = Inflight(self.work.begun - 1, ids, via, self.s.clock())
                self.jobs.checkpoint(self.work)
                raise
            self._settle(self._mark(ids, "failed", str(exc)[:500]))
        self.work.inflight = None
        self.jobs.checkpoint(self.work)
        return True

    def _patch_each(self, tenant: Tenant, base: str, token: str, ids: list[str]) -> None:
        for alert_id in ids:
            try:
                alert = self.s.defender.update_alert(base, token, alert_id,
                                                     self.job.change.body())
            except DefenderError as exc:
                if exc.transient or exc.status in (401, 403, 429):
                    raise
                self._settle(self._mark([alert_id], "failed", str(exc)[:500]))
                continue
            if self.s.hooks.store is not None:
                self.s.hooks.store(tenant.tenant_id, alert, self.job.actor)
            self._settle(self._mark([alert_id], "done", ""),
                         {k: alert.get(k) for k in self.job.change.fields()})

    def _graph_each(self, tenant: Tenant, token: str, ids: list[str]) -> None:
        """Graph: PATCH the fields, POST the comment, per alert (no batch endpoint). A
        comment refused after its PATCH is settled failed, saying the fields changed."""
        graph, change = self.s.graph, self.job.change
        if graph is None:
            raise DefenderError("no Graph client is configured for bulk triage", None,
                                transient=False)
        body = graph_change.patch_body(change)
        for alert_id in ids:
            answer: dict[str, Any] = {}
            try:
                if body:
                    answer = graph.update_alert(token, alert_id, body)
                if change.comment is not None:
                    graph.add_comment(token, alert_id, change.comment)
            except DefenderError as exc:
                if exc.transient or exc.status in (401, 403, 429):
                    raise
                half = "; the fields were changed, the comment was not added" \
                    if answer else ""
                self._settle(self._mark([alert_id], "failed", f"{exc}{half}"[:500]))
                continue
            if answer and change.comment is None and self.s.hooks.store is not None:
                self.s.hooks.store(tenant.tenant_id, answer, self.job.actor,
                                   schema=graph_change.GRAPH)
            shaped = graph_change.shaped(answer)
            self._settle(self._mark([alert_id], "done", ""),
                         {k: shaped.get(k) for k in change.fields()} if answer else None)

    def _pause(self, why: str, seconds: float) -> bool:
        """Put the tenant's message back for `seconds`; the job's page says why."""
        at = self.s.clock() + timedelta(seconds=seconds)
        self.work.inflight = None
        self.work.note = f"{why}: next call at {at:%H:%M:%S} UTC"
        self.jobs.checkpoint(self.work)
        self.s.requeue(self.work, seconds)
        return False
