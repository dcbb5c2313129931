"""In-memory tenants family: the registry, invitations, consent attempts, ops notices and a
tenant's data. Each subclasses the real repository and replaces only what touches the
table, so the named writes (`pause`, `mark_failing`, `begin_admission`...) are the real
ones; tests/contract/test_tenants.py holds both to one contract."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from shared.model import Tenant, TenantStatus, parse_tenant_id
from shared.storage import invitations, notices, tenant_data, tenant_directory, tenants
from shared.storage.alert_index import AlertIndex, key_of
from shared.storage.errors import AlreadyExists
from shared.storage.ingest_state import CURSOR, LEASE
from shared.storage.memory import new_etag
from shared.tenants.invitations import Invitation


class MemoryTenants(tenants.TenantRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Tenant] = {}

    def _copy(self, tenant: Tenant) -> Tenant:
        return copy.copy(tenant)

    def get(self, tenant_id: str) -> Tenant | None:
        found = self.rows.get(parse_tenant_id(tenant_id))
        return self._copy(found) if found else None

    def add(self, tenant: Tenant) -> Tenant:
        if tenant.tenant_id in self.rows:
            raise AlreadyExists(f"tenant {tenant.tenant_id} is registered")
        tenant.created_at = tenant.created_at or datetime.now(UTC)
        tenant.status_changed_at = tenant.status_changed_at or tenant.created_at
        self.save(tenant)
        return tenant

    def save(self, tenant: Tenant) -> None:
        stored = self._copy(tenant)
        stored.etag = new_etag()
        self.rows[tenant.tenant_id] = stored

    def merge(self, tenant_id: str, etag: str | None = None, **values: Any) -> None:
        stored = self.rows.get(parse_tenant_id(tenant_id))
        if stored is None:
            raise ResourceNotFoundError("no such tenant")
        if etag and etag != stored.etag:
            raise ResourceModifiedError("the tenant changed since it was read")
        for name, value in tenants._cleared(values).items():
            setattr(stored, name, TenantStatus(value) if name == "status" else value)
        stored.etag = new_etag()

    def all(self) -> Iterator[Tenant]:
        for key in sorted(self.rows):
            yield self._copy(self.rows[key])

    def with_status(self, status: TenantStatus, fields: Iterable[str] | None = None
                    ) -> Iterator[Tenant]:
        return (t for t in self.all() if t.status == status)

    def names(self) -> list[tenants.TenantName]:
        return tenants.by_name(tenants.TenantName(t.tenant_id, t.display_name or t.tenant_id)
                               for t in self.all())

    def directory(self) -> list[tenant_directory.Listed] | None:
        """Always in step (one dict); None for an empty store, as a fresh table."""
        if not self.rows:
            return None
        return [tenant_directory.Listed(t.tenant_id, t.display_name, t.status)
                for t in self.all()]

    def page(self, after: str, limit: int) -> tuple[list[Tenant], bool]:
        found = [t for t in self.all() if t.tenant_id > after]
        return found[:limit], len(found) > limit

    def needing_attention(self) -> list[Tenant]:
        return sorted((t for t in self.all() if tenant_directory.needs_attention(
            t.status, t.consecutive_failures)), key=tenants.attention)

    def rebuild_directory(self) -> int:
        return len(self.rows)

    def merge_many(self, changes: Iterable[dict[str, Any]]) -> None:
        for values in changes:
            values = dict(values)
            self.merge(values.pop("RowKey"), **values)


class MemoryInvitations(invitations.InvitationRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Invitation] = {}

    def create(self, invitation: Invitation) -> None:
        if invitation.id in self.rows:
            raise ResourceExistsError("the invitation exists")
        self.rows[invitation.id] = copy.copy(invitation)

    def get(self, invitation_id: str) -> Invitation | None:
        if not invitations._ID.match(invitation_id or ""):
            return None
        found = self.rows.get(invitation_id)
        return copy.copy(found) if found else None

    def all(self) -> list[Invitation]:
        return sorted((copy.copy(i) for i in self.rows.values()), key=lambda i: i.created_at,
                      reverse=True)

    def _merge(self, invitation: Invitation, **values: Any) -> None:
        stored = self.rows.get(invitation.id)
        if stored is None:
            raise ResourceNotFoundError("no such invitation")
        for name, value in values.items():
            setattr(stored, name, value)
            setattr(invitation, name, value)


class MemoryConsentStates(invitations.ConsentStateRepository):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], invitations.ConsentAttempt] = {}

    def record(self, attempt: invitations.ConsentAttempt) -> None:
        key = (attempt.invitation_id, attempt.attempt)
        if key in self.rows:
            raise ResourceExistsError("the attempt exists")
        self.rows[key] = dataclasses.replace(attempt, etag=new_etag())

    def get(self, invitation_id: str, attempt: str) -> invitations.ConsentAttempt | None:
        found = self.rows.get((invitation_id, attempt))
        return copy.copy(found) if found else None

    def consume(self, attempt: invitations.ConsentAttempt) -> bool:
        stored = self.rows.get((attempt.invitation_id, attempt.attempt))
        if stored is None or stored.etag != attempt.etag:
            return False
        stored.used, stored.etag = True, new_etag()
        attempt.used = True
        return True


class MemoryNotices(notices.NoticeRepository):
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, row_key: str, kind: str, tenant_id: str, to: str, subject: str,
            body: str) -> None:
        self.rows.setdefault(row_key, {
            "PartitionKey": notices.PARTITION, "RowKey": row_key, "Kind": kind,
            "Tenant": tenant_id, "To": to, "Subject": subject, "Body": body,
            "CreatedAt": datetime.now(UTC), "Sent": False, "State": "recorded"})

    def get(self, row_key: str) -> dict[str, Any] | None:
        found = self.rows.get(row_key)
        return dict(found) if found else None

    def recent(self, limit: int) -> list[dict[str, Any]]:
        return [dict(self.rows[k]) for k in sorted(self.rows)[:limit]]

    def pending(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        cut = notices.time_key(since)
        found = [dict(self.rows[k]) for k in sorted(self.rows)
                 if k < cut and not self.rows[k]["Sent"]][:limit]
        return found[::-1]

    def mark(self, row_key: str, state: str) -> None:
        if row_key not in self.rows:
            raise ResourceNotFoundError("no such notice")
        self.rows[row_key].update(Sent=True, State=state, SentAt=datetime.now(UTC))


class MemoryTenantData(tenant_data.TenantData):
    """Row keys only: alerts and ingest-state rows per tenant, and who holds each lease;
    the alerts' versions, for their AlertIndex entries."""

    def __init__(self, index: AlertIndex | None = None) -> None:
        self.alert_rows: dict[str, set[str]] = {}
        self.state_rows: dict[str, set[str]] = {}
        self.leases: dict[str, tuple[str, datetime]] = {}
        self.versions: dict[tuple[str, str], str] = {}
        self.index = index

    def put(self, tenant_id: str, alerts: Iterable[str] = (), state: Iterable[str] = (),
            versions: dict[str, str] | None = None) -> None:
        """Seed a tenant's rows (what ingest would have written)."""
        self.alert_rows.setdefault(tenant_id, set()).update(alerts)
        self.state_rows.setdefault(tenant_id, set()).update(state)
        self.versions.update({(tenant_id, k): v for k, v in (versions or {}).items()})

    def lock(self, tenant_id: str, owner: str, seconds: int) -> bool:
        now = datetime.now(UTC)
        holder, until = self.leases.get(tenant_id, (owner, now))
        if holder != owner and until > now:
            return False
        self.leases[tenant_id] = (owner, now + timedelta(seconds=seconds))
        self.state_rows.setdefault(tenant_id, set()).add(LEASE)
        return True

    def unlock(self, tenant_id: str, owner: str) -> None:
        if self.leases.get(tenant_id, ("",))[0] == owner:
            del self.leases[tenant_id]
            self.state_rows.get(tenant_id, set()).discard(LEASE)

    def erase(self, tenant_id: str) -> int:
        if self.index is not None:
            self.index.remove([key_of(tenant_id, k, v) for (t, k), v in self.versions.items()
                               if t == tenant_id and k in self.alert_rows.get(tenant_id, ())])
        deleted = sum(1 for k in self.alert_rows.pop(tenant_id, set()) if "%~" not in k)
        self.state_rows[tenant_id] = self.state_rows.get(tenant_id, set()) & {LEASE}
        return deleted

    def has_cursor(self, tenant_id: str) -> bool:
        return CURSOR in self.state_rows.get(tenant_id, set())
