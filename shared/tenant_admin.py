"""The MSSP's changes to its tenants: pause, resume, offboard, rename, set region."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from azure.data.tables import TableTransactionError

from shared.model import Tenant, TenantStatus
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.ingest_state import CURSOR, LEASE, IngestState
from shared.storage.tenants import TenantRepository
from shared.validation import Name, Strict, check

REGIONS = ("", "us", "eu", "uk", "au", "swa")
LEASE_WAIT_SECONDS = 60


def describe(tenant: Tenant) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"tenant_id": tenant.tenant_id, "display_name": tenant.display_name,
            "status": str(tenant.status), "status_reason": tenant.status_reason,
            "status_changed_at": iso(tenant.status_changed_at), "region": tenant.region,
            "created_at": iso(tenant.created_at),
            "health": {"last_success_at": iso(tenant.last_success_at),
                       "last_error": tenant.last_error or None,
                       "last_error_at": iso(tenant.last_error_at),
                       "consecutive_failures": tenant.consecutive_failures,
                       "throttled_until": iso(tenant.throttled_until)}}


class TenantPatch(Strict):
    """PATCH /api/tenants/{tenant_id}: only the fields given change."""

    display_name: Name = None  # type: ignore[assignment]  (absent: unchanged; never null)
    region: Literal["", "us", "eu", "uk", "au", "swa"] = None  # type: ignore[assignment]


class Offboard(Strict):
    """POST /api/tenants/{tenant_id}/offboard; no body is `{"delete_alerts": false}`."""

    delete_alerts: bool = False


class Conflict(ValueError):
    """The change does not apply to the tenant in its current status."""


class TenantAdmin:
    def __init__(self, storage: StorageConnection) -> None:
        self.tenants = TenantRepository(tables.table(storage, tables.TENANTS))
        self.alerts = tables.table(storage, tables.ALERTS)
        self.state = tables.table(storage, tables.INGEST_STATE)

    def _status(self, tenant: Tenant, status: TenantStatus, reason: str) -> Tenant:
        self.tenants.merge(tenant.tenant_id, status=status, status_reason=reason,
                           status_changed_at=datetime.now(UTC), fetch_queued_at=None)
        return self.tenants.get(tenant.tenant_id) or tenant

    def pause(self, tenant: Tenant) -> Tenant:
        if tenant.status != TenantStatus.ACTIVE:
            raise Conflict(f"only an active tenant can be paused (it is {tenant.status})")
        return self._status(tenant, TenantStatus.PAUSED, "paused by the MSSP")

    def resume(self, tenant: Tenant) -> Tenant:
        if tenant.status not in (TenantStatus.PAUSED, TenantStatus.UNAVAILABLE):
            raise Conflict(f"a {tenant.status} tenant cannot be resumed"
                           + ("; it must grant consent again" if tenant.status in (
                               TenantStatus.CONSENT_REVOKED, TenantStatus.OFFBOARDED) else ""))
        return self._status(tenant, TenantStatus.ACTIVE, "resumed by the MSSP")

    def offboard(self, tenant: Tenant, delete_alerts: bool) -> tuple[Tenant, int]:
        """Stop fetching; with delete_alerts, also remove its alerts and ingest state,
        after any fetch still running for it has finished (its lease)."""
        if tenant.status == TenantStatus.OFFBOARDED and not delete_alerts:
            return tenant, 0
        reason = "offboarded by the MSSP" + ("; alerts deleted" if delete_alerts else "")
        tenant = self._status(tenant, TenantStatus.OFFBOARDED, reason)
        if not delete_alerts:
            return tenant, 0
        state = IngestState(self.state, tenant.tenant_id)
        owner = f"offboard-{uuid.uuid4().hex}"
        deadline = time.monotonic() + LEASE_WAIT_SECONDS
        while not state.acquire_lease(owner, 600)[0]:
            if time.monotonic() > deadline:
                raise Conflict("a fetch for this tenant is still running; try again")
            time.sleep(0.5)
        deleted = self._delete_partition(self.alerts, tenant.tenant_id)
        self._delete_partition(self.state, tenant.tenant_id, keep={LEASE})
        state.release_lease(owner)
        return tenant, deleted

    @staticmethod
    def _delete_partition(table: Any, partition: str, keep: set[str] | None = None) -> int:
        """Delete every row of a partition; rows already gone are fine. Returns alerts."""
        keys = [k for k in table.query_entities("PartitionKey eq @pk",
                                                parameters={"pk": partition},
                                                select=["PartitionKey", "RowKey"])
                if k["RowKey"] not in (keep or set())]
        for start in range(0, len(keys), 100):
            chunk = keys[start:start + 100]
            try:
                table.submit_transaction([("delete", k) for k in chunk])
            except TableTransactionError:  # one was gone: the rest one by one
                for key in chunk:
                    table.delete_entity(key["PartitionKey"], key["RowKey"])
        return sum(1 for k in keys if "%~" not in k["RowKey"])

    def update(self, tenant: Tenant, body: Any) -> Tenant:
        """Rename or set the region from a PATCH body; `{}` changes nothing."""
        values = check(TenantPatch, body).model_dump(exclude_unset=True)
        if not values:
            return tenant
        self.tenants.merge(tenant.tenant_id, **values)
        return self.tenants.get(tenant.tenant_id) or tenant

    def has_cursor(self, tenant_id: str) -> bool:
        return any(True for _ in self.state.query_entities(
            "PartitionKey eq @pk and RowKey eq @rk", parameters={"pk": tenant_id, "rk": CURSOR}))
