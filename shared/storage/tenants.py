"""The tenant registry: one partition, a row per customer tenant.

Every change of a tenant's status or health has a method named for what happened
(`pause`, `mark_failing`, `stop`...), so each is written the same way wherever it happens;
`merge` stays for seeding and tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.model import SOURCES, Tenant, TenantStatus, parse_tenant_id
from shared.storage import batch
from shared.storage.errors import AlreadyExists, StateChanged

PARTITION = "tenant"
_FIELDS = [f.name for f in fields(Tenant) if f.name not in ("tenant_id", "etag")]
_TIMES = {"status_changed_at", "created_at", "last_success_at", "last_error_at",
          "fetch_queued_at", "fetch_cleared_at", "throttled_until"}
# MERGE cannot remove a property (the SDK drops None), so "no time" is stored as the epoch
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _value(name: str, value: Any) -> Any:
    if value is None and name in _TIMES:
        return NEVER
    return str(value) if isinstance(value, TenantStatus) else value


def _cleared(values: dict[str, Any]) -> dict[str, Any]:
    """Clearing `fetch_queued_at` also says when, which clears the fan-out ledger's mark
    of the tenant (see shared/ingest/fanout.py)."""
    if "fetch_queued_at" in values and values["fetch_queued_at"] is None:
        return {**values, "fetch_cleared_at": datetime.now(UTC)}
    return values


# failing and revoked first: they need someone to act
_RANK = {TenantStatus.CONSENT_REVOKED: 0, TenantStatus.UNAVAILABLE: 0,
         TenantStatus.ACTIVE: 2, TenantStatus.PAUSED: 3, TenantStatus.OFFBOARDED: 4}


@dataclass(frozen=True)
class TenantName:
    tenant_id: str
    display_name: str


def by_name(names: Iterable[TenantName]) -> list[TenantName]:
    return sorted(names, key=lambda n: (n.display_name.casefold(), n.tenant_id))


def attention(tenant: Tenant) -> tuple[int, int, str]:
    """The "failing first" order of lists: revoked and unavailable, then active tenants
    whose last fetch failed (most failures first), then the rest; by name within."""
    failing = tenant.status == TenantStatus.ACTIVE and tenant.consecutive_failures > 0
    return (1 if failing else _RANK[tenant.status], -tenant.consecutive_failures,
            tenant.display_name.lower())


def _to_entity(tenant: Tenant) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": tenant.tenant_id}
    for name in _FIELDS:
        entity[name] = _value(name, getattr(tenant, name))
    return entity


def _from_entity(entity: Any) -> Tenant:
    values = {name: entity.get(name) for name in _FIELDS
              if entity.get(name) is not None and entity.get(name) != NEVER}
    tenant = Tenant(tenant_id=entity["RowKey"], **values)
    tenant.etag = entity.metadata.get("etag")
    return tenant


class TenantRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def get(self, tenant_id: str) -> Tenant | None:
        try:
            return _from_entity(self.client.get_entity(PARTITION, parse_tenant_id(tenant_id)))
        except ResourceNotFoundError:
            return None

    def add(self, tenant: Tenant) -> Tenant:
        """Register a new tenant; AlreadyExists when it is registered already."""
        tenant.created_at = tenant.created_at or datetime.now(UTC)
        tenant.status_changed_at = tenant.status_changed_at or tenant.created_at
        try:
            self.client.create_entity(_to_entity(tenant))
        except ResourceExistsError as exc:
            raise AlreadyExists(f"tenant {tenant.tenant_id} is registered") from exc
        return tenant

    def save(self, tenant: Tenant) -> None:
        """Replace the whole row (registry edits)."""
        self.client.upsert_entity(_to_entity(tenant), mode=UpdateMode.REPLACE)

    def merge(self, tenant_id: str, etag: str | None = None, **values: Any) -> None:
        """Change some fields; with `etag`, only if nobody changed the row since."""
        entity = {"PartitionKey": PARTITION, "RowKey": parse_tenant_id(tenant_id)}
        for key, value in _cleared(values).items():
            entity[key] = _value(key, value)
        if etag:
            self.client.update_entity(entity, mode=UpdateMode.MERGE, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        else:
            self.client.update_entity(entity, mode=UpdateMode.MERGE)

    def set_status(self, tenant_id: str, status: TenantStatus, reason: str) -> None:
        """Only the status (seeding and tests); the app's changes use the methods below."""
        self.merge(tenant_id, status=status, status_reason=reason,
                   status_changed_at=datetime.now(UTC))

    # status: the MSSP's decisions, consent, and what a fetch found -----------------------
    def _change(self, tenant_id: str, status: TenantStatus, reason: str,
                **values: Any) -> None:
        """A new status, and any fetch it had queued forgotten (fan-out decides anew)."""
        self.merge(tenant_id, status=status, status_reason=reason,
                   status_changed_at=datetime.now(UTC), fetch_queued_at=None, **values)

    def pause(self, tenant_id: str, reason: str) -> None:
        self._change(tenant_id, TenantStatus.PAUSED, reason)

    def resume(self, tenant_id: str, reason: str) -> None:
        self._change(tenant_id, TenantStatus.ACTIVE, reason)

    def offboard(self, tenant_id: str, reason: str) -> None:
        self._change(tenant_id, TenantStatus.OFFBOARDED, reason)

    def reactivate(self, tenant_id: str, reason: str, *, access: str | None = None,
                   access_reason: str = "", consent_app: str | None = None) -> None:
        """Consent granted again: active, with a clean health record; with `access`, what
        this consent granted (its level, why not triage, and the app consented to)."""
        granted: dict[str, Any] = {} if access is None else {
            "access": access, "access_reason": access_reason,
            "consent_app": consent_app or "read"}
        self._change(tenant_id, TenantStatus.ACTIVE, reason, consecutive_failures=0,
                     last_error="", **granted)

    def record_grant(self, tenant_id: str, access: str, access_reason: str,
                     consent_app: str) -> None:
        """An active tenant consented again (to change its access): what it granted now.
        Its status and fetch state stay as they are: a fetch in flight is not forgotten,
        so the fan-out does not queue a second one."""
        self.merge(tenant_id, access=access, access_reason=access_reason,
                   consent_app=consent_app)

    def move_source(self, tenant_id: str, source: str) -> None:
        """Fetch the tenant's alerts from `source` ("mde" or "graph") from its next run
        on; the worker hands its cursor over (shared/ingest/graph_cursor.py)."""
        if source not in SOURCES:
            raise ValueError("source must be mde or graph")
        self.merge(tenant_id, source=source)

    def stop(self, tenant_id: str, status: TenantStatus, reason: str, error: str) -> None:
        """A fetch found consent revoked, the tenant gone or no Defender: not fetched
        again until someone acts; the error says why."""
        self._change(tenant_id, status, reason, last_error=error,
                     last_error_at=datetime.now(UTC))

    # health: what the last fetch did ------------------------------------------------------
    def mark_fetched_ok(self, tenant_id: str, more: bool = False,
                        if_unchanged: str | None = None) -> None:
        """A fetch succeeded; with `more`, it re-queued itself to continue. With
        `if_unchanged` (the row's etag as the fan-out read it), only if nobody changed the
        row since: StateChanged otherwise (say, paused meanwhile), so a worker that did not
        read the tenant finds out before it writes what it saw as an active tenant's."""
        now = datetime.now(UTC)
        try:
            self.merge(tenant_id, if_unchanged, last_success_at=now, consecutive_failures=0,
                       last_error="", fetch_queued_at=now if more else None,
                       throttled_until=None)
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise StateChanged(f"tenant {tenant_id} changed since it was read") from exc

    def mark_failing(self, tenant_id: str, error: str, failures: int) -> None:
        """A fetch failed: the error, and `failures` in a row so far."""
        self.merge(tenant_id, last_error=error, last_error_at=datetime.now(UTC),
                   consecutive_failures=failures)

    def mark_requeued(self, tenant_id: str, throttled_until: datetime | None = None) -> None:
        """A worker put the tenant's fetch back on the queue (throttled: until when)."""
        values: dict[str, Any] = {"fetch_queued_at": datetime.now(UTC)}
        if throttled_until is not None:
            values["throttled_until"] = throttled_until
        self.merge(tenant_id, **values)

    def clear_fetch_queued(self, tenant_id: str) -> None:
        """No fetch of the tenant is queued any more: the next fan-out may queue one."""
        self.merge(tenant_id, fetch_queued_at=None)

    def mark_poisoned(self, tenant_id: str, error: str) -> None:
        """A message of the tenant was given up on: why, and nothing queued any more."""
        self.merge(tenant_id, last_error=error, last_error_at=datetime.now(UTC),
                   fetch_queued_at=None)

    def set_access(self, tenant_id: str, access: str, reason: str) -> None:
        """What the tenant granted: "read" (why not triage: `reason`) or "triage"."""
        if access not in ("read", "triage"):
            raise ValueError("access must be read or triage")
        self.merge(tenant_id, access=access, access_reason=reason)

    def edit(self, tenant_id: str, display_name: str | None = None,
             region: str | None = None) -> None:
        """The MSSP renames the tenant or sets its region (None: unchanged)."""
        values = {k: v for k, v in (("display_name", display_name), ("region", region))
                  if v is not None}
        if values:
            self.merge(tenant_id, **values)

    # reads --------------------------------------------------------------------------------
    def failing_first(self) -> list[Tenant]:
        """Every tenant, in the order lists show them (see `attention`)."""
        return sorted(self.all(), key=attention)

    def all(self) -> Iterator[Tenant]:
        for entity in self.client.query_entities("PartitionKey eq @pk",
                                                 parameters={"pk": PARTITION}):
            yield _from_entity(entity)

    def names(self) -> list[TenantName]:
        """Every tenant's id and name, by name: what a tenant picker or a list of alerts
        shows of the registry, two columns a row rather than every health field."""
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION},
                                          select=["RowKey", "display_name"])
        return by_name(TenantName(r["RowKey"], r.get("display_name") or r["RowKey"])
                       for r in rows)

    def with_status(self, status: TenantStatus, fields: Iterable[str] | None = None
                    ) -> Iterator[Tenant]:
        """Tenants in `status`; with `fields`, only those are read (and display_name)."""
        query = "PartitionKey eq @pk and status eq @status"
        select = None if fields is None else ["RowKey", "display_name", "status", *fields]
        for entity in self.client.query_entities(query, parameters={"pk": PARTITION,
                                                                    "status": str(status)},
                                                 select=select):
            yield _from_entity(entity)

    def merge_many(self, changes: Iterable[dict[str, Any]]) -> None:
        """MERGE many rows, 100 per transaction (one partition)."""
        ops: list[Any] = []
        for values in changes:
            entity = {"PartitionKey": PARTITION,
                      **{k: v if k == "RowKey" else _value(k, v)
                         for k, v in _cleared(values).items()}}
            ops.append(("upsert", entity, {"mode": UpdateMode.MERGE}))
            if len(ops) == 100:
                batch.submit_transaction(self.client, ops)
                ops = []
        if ops:
            batch.submit_transaction(self.client, ops)
