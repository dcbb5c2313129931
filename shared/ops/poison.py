"""Messages the host gave up on: kept with the reason, and charged to the tenant's health.

The host moves a message to `<queue>-poison` after maxDequeueCount attempts. A timer
drains those queues (`PoisonDrain`) rather than queue triggers: host.json's
`maxPollingInterval` is app-wide, and a trigger on each poison queue polled it as often
as the work queues for messages that can wait minutes (docs/ingest.md, "Queue polling
and its cost")."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.logsafe import clean
from shared.messages import tenant_of
from shared.storage.poison_log import PoisonLogRepository
from shared.storage.poison_queue import PoisonQueue
from shared.storage.tenants import TenantRepository

log = logging.getLogger("mssp_hub.poison")
PER_QUEUE = 64  # messages a drain takes from each poison queue a run
HIDE_SECONDS = 120  # a taken message is hidden this long: a run that dies lets it back


class PoisonLog:
    def __init__(self, rows: PoisonLogRepository, tenants: TenantRepository) -> None:
        self.rows, self.tenants = rows, tenants

    def record(self, queue_name: str, body: str, reason: str, tenant_id: str | None = None,
               *, message_id: str | None = None, at: datetime | None = None) -> str:
        """Keep the message (nothing is lost) and say on the tenant why it stopped. With
        `message_id` and `at` (a poison queue's message), recording it again replaces the
        same row."""
        now = at or datetime.now(UTC)
        tenant_id = tenant_id or tenant_of(body)
        tenant = self.tenants.get(tenant_id) if tenant_id else None
        if tenant is not None and tenant.last_error.startswith(reason):
            reason = tenant.last_error  # recorded again: as the first time
        elif tenant is not None and tenant.last_error:
            reason = f"{reason}; last error: {tenant.last_error}"
        row_key = self.rows.add(queue_name, body, clean(reason, 2000), tenant_id or "", now,
                                message_id=message_id)
        if tenant is not None:
            self.tenants.mark_poisoned(tenant.tenant_id, clean(reason, 1000))
        return row_key

    def recent(self, queue_name: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.rows.recent(queue_name, limit)


@dataclass(frozen=True)
class PoisonSource:
    """A work queue's poison queue, and the reason its messages are kept with."""

    queue_name: str  # the work queue (the PoisonLog partition)
    poisoned: PoisonQueue
    reason: Callable[[str], str]  # of the message's body
    # what else giving up on a message means (a bulk job's alerts fail with the reason);
    # called after the record and before the delete, so it must be idempotent
    settle: Callable[[str, str], None] | None = None


class PoisonDrain:
    """Each run takes a bounded batch from every poison queue and, per message, records
    it then deletes it. A run that dies between the two leaves the message to come back
    after HIDE_SECONDS: recorded again under the same row key (the message's id and
    poison time), so one record per message, never two."""

    def __init__(self, poison_log: PoisonLog, sources: Sequence[PoisonSource],
                 per_queue: int = PER_QUEUE, hide_seconds: int = HIDE_SECONDS) -> None:
        self.log, self.sources = poison_log, sources
        self.per_queue, self.hide_seconds = per_queue, hide_seconds

    def run(self) -> dict[str, int]:
        """Messages recorded per work queue. A queue that fails does not stop the others;
        the first failure is raised at the end (the run shows as failed)."""
        drained: dict[str, int] = {}
        failed: Exception | None = None
        for source in self.sources:
            try:
                drained[source.queue_name] = self._drain(source)
            except Exception as exc:  # the next run retries; the other queues go on
                log.exception("could not drain %s-poison", source.queue_name)
                failed = failed or exc
        if failed is not None:
            raise failed
        return drained

    def _drain(self, source: PoisonSource) -> int:
        taken = source.poisoned.take(self.per_queue, self.hide_seconds)
        for message in taken:
            reason = source.reason(message.body)
            self.log.record(source.queue_name, message.body, reason,
                            message_id=message.message_id, at=message.poisoned_at)
            if source.settle is not None:
                source.settle(message.body, reason)
            source.poisoned.remove(message)
        return len(taken)
