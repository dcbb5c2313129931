"""The MSSP's changes to its tenants: pause, resume, offboard, rename, set region."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, WithJsonSchema

from shared.model import Tenant, TenantStatus
from shared.storage.tenant_data import TenantData
from shared.storage.tenants import TenantRepository
from shared.tenants.invitations import Access, Source
from shared.validation import Name, Reply, Strict, Timestamp, absent, check

LEASE_WAIT_SECONDS = 60


Region = Literal["", "us", "eu", "uk", "au", "swa"]
REGIONS: tuple[str, ...] = get_args(Region)


class TenantHealth(Reply):
    last_success_at: Timestamp | None
    last_error: str | None
    last_error_at: Timestamp | None
    consecutive_failures: int
    throttled_until: Timestamp | None


class TenantView(Reply):
    """A tenant as the admin API shows it (GET, PATCH, pause/resume/offboard)."""

    model_config = ConfigDict(title="Tenant")

    tenant_id: Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]
    display_name: str
    status: TenantStatus
    status_reason: str
    status_changed_at: Timestamp | None
    region: Region
    created_at: Timestamp | None
    health: TenantHealth
    access: Access = Field(description="what the tenant granted, from its token's roles: "
                           "read (Alert.Read.All) or triage (Alert.ReadWrite.All)")
    access_reason: str | None = Field(description="why not triage, when not")
    source: Source = Field(description="where its alerts are fetched from: mde (Defender "
                           "for Endpoint) or graph (Microsoft Graph security alerts_v2)")
    alerts_deleted: int | None = absent("offboard only")

    @classmethod
    def of(cls, tenant: Tenant, alerts_deleted: int | None = None) -> TenantView:
        return cls(tenant_id=tenant.tenant_id, display_name=tenant.display_name,
                   status=tenant.status, status_reason=tenant.status_reason,
                   status_changed_at=tenant.status_changed_at, region=tenant.region,
                   created_at=tenant.created_at, alerts_deleted=alerts_deleted,
                   access=tenant.access,  # type: ignore[arg-type]
                   access_reason=tenant.access_reason or None,
                   source=tenant.source,  # type: ignore[arg-type]
                   health=TenantHealth(last_success_at=tenant.last_success_at,
                                       last_error=tenant.last_error or None,
                                       last_error_at=tenant.last_error_at,
                                       consecutive_failures=tenant.consecutive_failures,
                                       throttled_until=tenant.throttled_until))


class TenantPatch(Strict):
    """PATCH /api/tenants/{tenant_id}: only the fields given change."""

    display_name: Name = None  # type: ignore[assignment]  (absent: unchanged; never null)
    region: Region = None  # type: ignore[assignment]


class Offboard(Strict):
    """POST /api/tenants/{tenant_id}/offboard; no body is `{"delete_alerts": false}`."""

    delete_alerts: bool = False


class Conflict(ValueError):
    """The change does not apply to the tenant in its current status."""


class TenantAdmin:
    def __init__(self, tenants: TenantRepository, data: TenantData) -> None:
        self.tenants, self.data = tenants, data

    def _reread(self, tenant: Tenant) -> Tenant:
        return self.tenants.get(tenant.tenant_id) or tenant

    def pause(self, tenant: Tenant) -> Tenant:
        if tenant.status != TenantStatus.ACTIVE:
            raise Conflict(f"only an active tenant can be paused (it is {tenant.status})")
        self.tenants.pause(tenant.tenant_id, "paused by the MSSP")
        return self._reread(tenant)

    def resume(self, tenant: Tenant) -> Tenant:
        if tenant.status not in (TenantStatus.PAUSED, TenantStatus.UNAVAILABLE):
            raise Conflict(f"a {tenant.status} tenant cannot be resumed"
                           + ("; it must grant consent again" if tenant.status in (
                               TenantStatus.CONSENT_REVOKED, TenantStatus.OFFBOARDED) else ""))
        self.tenants.resume(tenant.tenant_id, "resumed by the MSSP")
        return self._reread(tenant)

    def offboard(self, tenant: Tenant, delete_alerts: bool) -> tuple[Tenant, int]:
        """Stop fetching; with delete_alerts, also remove its alerts and ingest state,
        after any fetch still running for it has finished (its lease)."""
        if tenant.status == TenantStatus.OFFBOARDED and not delete_alerts:
            return tenant, 0
        reason = "offboarded by the MSSP" + ("; alerts deleted" if delete_alerts else "")
        self.tenants.offboard(tenant.tenant_id, reason)
        tenant = self._reread(tenant)
        if not delete_alerts:
            return tenant, 0
        owner = f"offboard-{uuid.uuid4().hex}"
        deadline = time.monotonic() + LEASE_WAIT_SECONDS
        while not self.data.lock(tenant.tenant_id, owner, 600):
            if time.monotonic() > deadline:
                raise Conflict("a fetch for this tenant is still running; try again")
            time.sleep(0.5)
        deleted = self.data.erase(tenant.tenant_id)
        self.data.unlock(tenant.tenant_id, owner)
        return tenant, deleted

    def update(self, tenant: Tenant, body: Any) -> Tenant:
        """Rename or set the region from a PATCH body; `{}` changes nothing."""
        values = check(TenantPatch, body).model_dump(exclude_unset=True)
        if not values:
            return tenant
        self.tenants.edit(tenant.tenant_id, **values)
        return self._reread(tenant)

    def has_cursor(self, tenant_id: str) -> bool:
        return self.data.has_cursor(tenant_id)
