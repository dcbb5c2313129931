"""What a fetch run holds, made sure of only when it is about to write.

Why: an idle run (Defender has nothing new) is 288 runs a tenant a day, and each storage
request of it is paid that often. It opens with a short lease (IDLE_LEASE_SECONDS: one
call and its answer) taken with the budget in one transaction, on the tenant as the
fan-out read it (`TenantSeen`, no read of its own). Before its first write of anything
else (alert rows, a commit, a re-queue) the run extends the lease to LEASE_SECONDS
(ETag-guarded: a run whose lease lapsed and was taken over stops there, having written
nothing) and reads the tenant (paused or offboarded since the fan-out: it stops there too).
An idle run writes only the tenant's health, guarded by the etag the fan-out read, and lets
its lease lapse: three storage requests in all.
"""

from __future__ import annotations

from shared.messages import FetchRequest
from shared.model import Tenant, TenantStatus
from shared.storage.errors import StateChanged
from shared.storage.ingest_state import ConflictError, IngestState
from shared.storage.tenants import TenantRepository

IDLE_LEASE_SECONDS = 120  # a run's lease until it writes: one page's call and answer
LEASE_SECONDS = 900  # once it writes


class TenantLeft(RuntimeError):
    """The tenant is no longer active (paused, offboarded or gone since it was queued)."""


class SourceChanged(TenantLeft):
    """The tenant moved to another source (mde -> graph) since the run's message was sent:
    the run stops before its first write, and the next fan-out queues the right one."""


def seen_tenant(request: FetchRequest) -> Tenant | None:
    """The tenant as the fan-out's message carries it (None: the message carries none)."""
    seen = request.seen
    if seen is None:
        return None
    tenant = Tenant(request.tenant_id, seen.display_name, TenantStatus.ACTIVE,
                    region=seen.region, consecutive_failures=seen.failures,
                    consent_app=seen.consent_app, source=seen.source)
    tenant.etag = seen.etag
    return tenant


class RunHold:
    """A run's lease (short until `secure`) and its tenant (as seen until read)."""

    def __init__(self, state: IngestState, owner: str, lease_etag: str | None,
                 tenant: Tenant, read: bool, tenants: TenantRepository) -> None:
        """`read`: `tenant` was read from the registry after the lease was taken."""
        self.state, self.owner, self.lease_etag = state, owner, lease_etag
        self.tenant, self.read, self.tenants = tenant, read, tenants
        self.source = tenant.source  # the API this run reads
        self.extended = False

    def current(self) -> Tenant | None:
        """The tenant as the registry has it now (read once per run, at most)."""
        if not self.read:
            fresh = self.tenants.get(self.tenant.tenant_id)
            self.read = True
            if fresh is None:
                return None
            self.tenant = fresh
        return self.tenant

    def active(self) -> Tenant:
        """The current tenant; TenantLeft when it is not active any more."""
        tenant = self.current()
        if tenant is None:
            raise TenantLeft("unknown tenant")
        if tenant.status != TenantStatus.ACTIVE:
            raise TenantLeft(f"tenant is {tenant.status}")
        return tenant

    def secure(self) -> None:
        """Before the run's first write: the lease for LEASE_SECONDS (ConflictError when
        it lapsed and another worker took it) and the tenant still active (TenantLeft)."""
        if self.extended:
            return
        if self.lease_etag is None:
            raise ConflictError("the run holds no lease")
        etag = self.state.extend(self.owner, LEASE_SECONDS, self.lease_etag)
        if etag is None:
            raise ConflictError("the run's lease lapsed and another worker took it")
        self.lease_etag, self.extended = etag, True
        if self.active().source != self.source:
            raise SourceChanged(f"the tenant moved to {self.tenant.source}")

    def fetched_ok(self, more: bool) -> None:
        """The tenant's health after a successful run: one write, guarded by the etag the
        fan-out read when the tenant was not read; TenantLeft when it is not active now."""
        if not self.read:
            try:
                self.tenants.mark_fetched_ok(self.tenant.tenant_id, more,
                                             if_unchanged=self.tenant.etag)
                return
            except StateChanged:
                pass  # changed since the fan-out: read it
        self.active()
        self.tenants.mark_fetched_ok(self.tenant.tenant_id, more)
