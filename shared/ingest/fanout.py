"""The timer's fan-out: one fetch message per active tenant that is not already queued,
running or throttled; sent concurrently (a lean queue sender) so 10,000 tenants take
seconds, and remembered in one ledger row per run rather than a write per tenant."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.ingest.worker import PENDING_SECONDS
from shared.logsafe import clean
from shared.messages import FetchRequest, TenantSeen
from shared.model import Tenant, TenantStatus
from shared.storage.fanout_ledger import FanoutLedger
from shared.storage.queues import FetchQueue
from shared.storage.tenants import TenantRepository

log = logging.getLogger("mssp_hub.fanout")
SENDERS = 8  # concurrent puts; more did not help (bench/fanout.py)
LEDGER_EVERY = 2_500  # enqueued tenants between ledger writes during a run
# what `due` decides on, and what the worker takes from the message (`TenantSeen`)
DUE_FIELDS = ("fetch_queued_at", "fetch_cleared_at", "throttled_until", "region",
              "consecutive_failures", "consent_app", "source")


@dataclass
class FanoutResult:
    enqueued: list[str] = field(default_factory=list)
    pending: int = 0
    throttled: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    past_due: bool = False


def due(tenant: Tenant, now: datetime, fanned_out_at: datetime | None = None) -> str:
    """'' if the tenant should be fetched now, else why not.

    Queued means: a worker re-queued it (`fetch_queued_at`), or a recent fan-out did
    (`fanned_out_at`, from the ledger) and nothing cleared the tenant since.
    """
    if tenant.throttled_until and tenant.throttled_until > now:
        return "throttled"
    queued = tenant.fetch_queued_at
    if fanned_out_at and not (tenant.fetch_cleared_at
                              and tenant.fetch_cleared_at >= fanned_out_at):
        queued = max(queued, fanned_out_at) if queued else fanned_out_at
    if queued and queued > now - timedelta(seconds=PENDING_SECONDS):
        return "pending"
    return ""


def seen(tenant: Tenant) -> TenantSeen | None:
    """What the fetch message carries of the tenant (None: the row's etag is unknown)."""
    if not tenant.etag:
        return None
    return TenantSeen(tenant.display_name, tenant.region, tenant.consecutive_failures,
                      tenant.etag, tenant.consent_app, tenant.source)


class Fanout:
    def __init__(self, tenants: TenantRepository, ledger: FanoutLedger, queue: FetchQueue
                 ) -> None:
        """`queue`: on the lean sender (`QueueSender`), for many puts at once."""
        self.tenants, self.ledger, self.queue = tenants, ledger, queue

    def run(self, past_due: bool = False) -> FanoutResult:
        now = datetime.now(UTC)
        result = FanoutResult(past_due=past_due)
        since = now - timedelta(seconds=PENDING_SECONDS)
        marks = self.ledger.recent(since)

        def send(tenant: Tenant) -> tuple[str, str]:
            try:
                self.queue.request(FetchRequest(tenant.tenant_id, seen=seen(tenant)))
                return tenant.tenant_id, ""
            except Exception as exc:  # one tenant's failure never stops the others
                return tenant.tenant_id, clean(f"{type(exc).__name__}: {exc}", 300)

        # sends start while the registry is still being read; the ledger is written as
        # they complete, so a run that dies part-way has marked (nearly) all it sent
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="fanout") as pool:
            sending: list[Future[tuple[str, str]]] = []
            try:
                for tenant in self.tenants.with_status(TenantStatus.ACTIVE, DUE_FIELDS):
                    why = due(tenant, now, marks.get(tenant.tenant_id))
                    if why == "throttled":
                        result.throttled += 1
                    elif why == "pending":
                        result.pending += 1
                    else:
                        sending.append(pool.submit(send, tenant))
            finally:  # also when the registry read fails part-way: mark what was sent
                self._collect(sending, result, now)
        self.ledger.prune(since)
        log.info("fan-out: %d enqueued, %d pending, %d throttled, %d failed%s",
                 len(result.enqueued), result.pending, result.throttled, len(result.failed),
                 " (past due)" if past_due else "")
        return result

    def _collect(self, sending: list[Future[tuple[str, str]]], result: FanoutResult,
                 now: datetime) -> None:
        for n, future in enumerate(sending, 1):
            tenant_id, error = future.result()
            if error:
                result.failed[tenant_id] = error
            else:
                result.enqueued.append(tenant_id)
            if n % LEDGER_EVERY == 0:
                self.ledger.record(now, result.enqueued)
        if result.enqueued:
            self.ledger.record(now, result.enqueued)
