"""The timer's fan-out: one fetch message per active tenant that is not already queued,
running or throttled; sent concurrently so 10,000 tenants take seconds."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared.ingest import PENDING_SECONDS
from shared.logsafe import clean
from shared.messages import FetchRequest
from shared.model import Tenant, TenantStatus
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.tenants import TenantRepository

log = logging.getLogger("mssp_hub.fanout")
SENDERS = 16


@dataclass
class FanoutResult:
    enqueued: list[str] = field(default_factory=list)
    pending: int = 0
    throttled: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    past_due: bool = False


def due(tenant: Tenant, now: datetime) -> str:
    """'' if the tenant should be fetched now, else why not."""
    if tenant.throttled_until and tenant.throttled_until > now:
        return "throttled"
    if tenant.fetch_queued_at and tenant.fetch_queued_at > now - timedelta(
            seconds=PENDING_SECONDS):
        return "pending"
    return ""


class Fanout:
    def __init__(self, storage: StorageConnection) -> None:
        self.tenants = TenantRepository(tables.table(storage, tables.TENANTS))
        self.queue = tables.queue(storage, tables.FETCH_QUEUE)

    def run(self, past_due: bool = False) -> FanoutResult:
        now = datetime.now(UTC)
        result = FanoutResult(past_due=past_due)
        todo = []
        for tenant in self.tenants.with_status(TenantStatus.ACTIVE):
            why = due(tenant, now)
            if why == "throttled":
                result.throttled += 1
            elif why == "pending":
                result.pending += 1
            else:
                todo.append(tenant.tenant_id)

        def send(tenant_id: str) -> tuple[str, str]:
            try:
                self.queue.send_message(FetchRequest(tenant_id).to_message())
                return tenant_id, ""
            except Exception as exc:  # one tenant's failure never stops the others
                return tenant_id, clean(f"{type(exc).__name__}: {exc}", 300)

        with ThreadPoolExecutor(SENDERS, thread_name_prefix="fanout") as pool:
            for tenant_id, error in pool.map(send, todo):
                if error:
                    result.failed[tenant_id] = error
                else:
                    result.enqueued.append(tenant_id)
        self.tenants.merge_many({"RowKey": t, "fetch_queued_at": now} for t in result.enqueued)
        log.info("fan-out: %d enqueued, %d pending, %d throttled, %d failed%s",
                 len(result.enqueued), result.pending, result.throttled, len(result.failed),
                 " (past due)" if past_due else "")
        return result
