"""Messages the host gave up on: kept with the reason, and charged to the tenant's health."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.logsafe import clean
from shared.messages import tenant_of
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.limits import clip_text
from shared.storage.tenants import TenantRepository

_MAX_TICKS = 10**19 - 1


class PoisonLog:
    def __init__(self, storage: StorageConnection) -> None:
        self.table = tables.table(storage, tables.POISON_LOG)
        self.tenants = TenantRepository(tables.table(storage, tables.TENANTS))

    def record(self, queue_name: str, body: str, reason: str, tenant_id: str | None = None
               ) -> str:
        """Keep the message (nothing is lost) and say on the tenant why it stopped."""
        now = datetime.now(UTC)
        tenant_id = tenant_id or tenant_of(body)
        tenant = self.tenants.get(tenant_id) if tenant_id else None
        if tenant is not None and tenant.last_error:
            reason = f"{reason}; last error: {tenant.last_error}"
        row_key = f"{_MAX_TICKS - int(now.timestamp() * 10**7):019d}:{uuid.uuid4().hex[:8]}"
        self.table.upsert_entity({"PartitionKey": queue_name, "RowKey": row_key,
                                  "Body": clip_text(body), "Reason": clean(reason, 2000),
                                  "Tenant": tenant_id or "", "At": now})
        if tenant is not None:
            self.tenants.mark_poisoned(tenant.tenant_id, clean(reason, 1000))
        return row_key

    def recent(self, queue_name: str, limit: int = 50) -> list[dict]:
        rows = self.table.query_entities("PartitionKey eq @pk", parameters={"pk": queue_name})
        found = []
        for row in rows:
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found
