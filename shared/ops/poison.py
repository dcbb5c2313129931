"""Messages the host gave up on: kept with the reason, and charged to the tenant's health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.logsafe import clean
from shared.messages import tenant_of
from shared.storage.poison_log import PoisonLogRepository
from shared.storage.tenants import TenantRepository


class PoisonLog:
    def __init__(self, rows: PoisonLogRepository, tenants: TenantRepository) -> None:
        self.rows, self.tenants = rows, tenants

    def record(self, queue_name: str, body: str, reason: str, tenant_id: str | None = None
               ) -> str:
        """Keep the message (nothing is lost) and say on the tenant why it stopped."""
        now = datetime.now(UTC)
        tenant_id = tenant_id or tenant_of(body)
        tenant = self.tenants.get(tenant_id) if tenant_id else None
        if tenant is not None and tenant.last_error:
            reason = f"{reason}; last error: {tenant.last_error}"
        row_key = self.rows.add(queue_name, body, clean(reason, 2000), tenant_id or "", now)
        if tenant is not None:
            self.tenants.mark_poisoned(tenant.tenant_id, clean(reason, 1000))
        return row_key

    def recent(self, queue_name: str, limit: int = 50) -> list[dict[str, Any]]:
        return self.rows.recent(queue_name, limit)
