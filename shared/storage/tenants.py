"""The tenant registry: one partition, a row per customer tenant.

Every change of a tenant's status or health has a method named for what happened
(`pause`, `mark_failing`, `stop`...), so each is written the same way wherever it happens;
`merge` stays for seeding and tests. A change of a name or a status, or a failure, also
writes the tenant directory (storage/tenant_directory.py) in the same transaction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.model import SOURCES, Tenant, TenantStatus, parse_tenant_id
from shared.storage import batch
from shared.storage import tenant_directory as directory
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.tenant_directory import Listed

PARTITION = "tenant"
REGISTRY = "PartitionKey eq @pk and RowKey lt @end"  # the tenant rows, not the directory
TRIES = 20  # a directory page changed by another writer meanwhile: read it again
PARALLEL = 8
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


def _registry_error(exc: TableTransactionError) -> Exception:
    """The error the single write would have raised, for the registry row's operation."""
    kinds = {404: ResourceNotFoundError, 409: ResourceExistsError, 412: ResourceModifiedError}
    kind = kinds.get(exc.status_code or 0)
    return kind(str(exc)) if kind else exc


def _guarded(etag: str | None) -> dict[str, Any]:
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}


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
            self._commit(("create", _to_entity(tenant)), tenant.tenant_id,
                         lambda _: [tenant.display_name, str(tenant.status)],
                         directory.needs_attention(tenant.status, tenant.consecutive_failures),
                         first=True)
        except ResourceExistsError as exc:
            raise AlreadyExists(f"tenant {tenant.tenant_id} is registered") from exc
        return tenant

    def save(self, tenant: Tenant) -> None:
        """Replace the whole row (registry edits)."""
        self._commit(("upsert", _to_entity(tenant), {"mode": UpdateMode.REPLACE}),
                     tenant.tenant_id, lambda _: [tenant.display_name, str(tenant.status)],
                     directory.needs_attention(tenant.status, tenant.consecutive_failures))

    def merge(self, tenant_id: str, etag: str | None = None, **values: Any) -> None:
        """Change some fields; with `etag`, only if nobody changed the row since."""
        tenant_id = parse_tenant_id(tenant_id)
        entity = {"PartitionKey": PARTITION, "RowKey": tenant_id}
        for key, value in _cleared(values).items():
            entity[key] = _value(key, value)
        listed = "display_name" in values or "status" in values
        mark = directory.may_need_attention(values)
        if not listed and not mark:  # health only (a fetch's): one MERGE, as ever
            self.client.update_entity(entity, mode=UpdateMode.MERGE, **_guarded(etag))
            return

        def listing(current: list[str] | None) -> list[str] | None:
            current = current or self._listing(tenant_id)
            if current is None:
                return None  # no such tenant: the MERGE fails
            return [str(values.get("display_name", current[0])),
                    str(values.get("status", current[1]))]

        self._commit(("update", entity, {"mode": UpdateMode.MERGE, **_guarded(etag)}),
                     tenant_id, listing if listed else None, mark)

    def _listing(self, tenant_id: str) -> list[str] | None:
        """[name, status] from the tenant's row (its directory entry is missing)."""
        try:
            row = self.client.get_entity(PARTITION, tenant_id,
                                         select=["display_name", "status"])
        except ResourceNotFoundError:
            return None
        return [str(row.get("display_name") or ""), str(row.get("status") or "active")]

    def _commit(self, change: batch.Operation, tenant_id: str,
                listing: Callable[[list[str] | None], list[str] | None] | None,
                mark: bool, first: bool = False) -> None:
        """The registry row's `change` and, in the same transaction, the tenant's entry
        of its name page (`listing` makes it from the current one), its attention mark
        (`mark`), and on the first tenant of a store, the directory's "complete" row."""
        for _ in range(TRIES):
            ops: list[batch.Operation] = [change]
            page_op = None
            if listing is not None:
                key = directory.page_key(tenant_id)
                try:
                    row = self.client.get_entity(PARTITION, key)
                    entries, etag = directory.entries_of(row), row.metadata["etag"]
                except ResourceNotFoundError:
                    entries, etag = {}, None
                entry = listing(entries.get(tenant_id))
                if entry is not None and entries.get(tenant_id) != entry:
                    entries[tenant_id] = entry
                    page = directory.page_entity(PARTITION, key, entries)
                    page_op = len(ops)
                    ops.append(("update", page, {"mode": UpdateMode.REPLACE,
                                                 **_guarded(etag)}) if etag
                               else ("create", page))
            if mark:
                ops.append(("upsert", directory.attention_entity(PARTITION, tenant_id),
                            {"mode": UpdateMode.REPLACE}))
            if first and self._empty_without_directory():
                ops.append(("upsert", directory.built_entity(PARTITION),
                            {"mode": UpdateMode.REPLACE}))
            try:
                batch.submit_transaction(self.client, ops)
                return
            except TableTransactionError as exc:
                if page_op is not None and exc.index == page_op \
                        and exc.status_code in (409, 412):
                    continue  # another tenant's change of the same page came first
                raise _registry_error(exc) from exc
        raise RuntimeError(f"the directory page of {tenant_id} kept changing")

    def _empty_without_directory(self) -> bool:
        """No tenant yet and the directory not marked complete: this is the first."""
        try:
            self.client.get_entity(PARTITION, directory.BUILT)
            return False
        except ResourceNotFoundError:
            pass
        rows = self.client.query_entities(REGISTRY, parameters={
            "pk": PARTITION, "end": directory.BOUNDARY}, select=["RowKey"], results_per_page=1)
        return next(iter(rows), None) is None

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
        for entity in self.client.query_entities(REGISTRY, parameters={
                "pk": PARTITION, "end": directory.BOUNDARY}):
            yield _from_entity(entity)

    def names(self) -> list[TenantName]:
        """Every tenant's id and name, by name: what a tenant picker or a list of alerts
        shows of the registry; from the directory's 16 name pages (the registry's rows,
        two columns each, while the directory is not complete)."""
        listed = self.directory()
        if listed is not None:
            return by_name(TenantName(t.tenant_id, t.display_name or t.tenant_id)
                           for t in listed)
        rows = self.client.query_entities(REGISTRY, parameters={
            "pk": PARTITION, "end": directory.BOUNDARY}, select=["RowKey", "display_name"])
        return by_name(TenantName(r["RowKey"], r.get("display_name") or r["RowKey"])
                       for r in rows)

    def directory(self) -> list[Listed] | None:
        """Every tenant's id, name and status from the name pages (one query, 17 rows
        at most); None while the directory is not complete (a store from before it, not
        backfilled yet)."""
        entries: directory.Entries = {}
        built = False
        for row in self.client.query_entities(
                "PartitionKey eq @pk and RowKey ge @first and RowKey lt @end",
                parameters={"pk": PARTITION, "first": directory.NAMES,
                            "end": directory.NAMES_END}):
            if row["RowKey"] == directory.BUILT:
                built = True
            else:
                entries.update(directory.entries_of(row))
        return directory.listed(entries) if built else None

    def page(self, after: str, limit: int) -> tuple[list[Tenant], bool]:
        """Up to `limit` tenants after the tenant id `after` ("" for the first), in id
        order, and whether there are more: one query, `limit` + 1 rows at most."""
        rows = self.client.query_entities(
            "PartitionKey eq @pk and RowKey gt @after and RowKey lt @end",
            parameters={"pk": PARTITION, "after": after, "end": directory.BOUNDARY},
            results_per_page=limit + 1)
        found: list[Tenant] = []
        for row in rows:
            if len(found) == limit:
                return found, True
            found.append(_from_entity(row))
        return found, False

    def needing_attention(self) -> list[Tenant]:
        """The tenants that need someone to act (revoked, unavailable, failing), failing
        first: each attention mark checked against the tenant's row; the marks of tenants
        that recovered are removed (unless the row changed since it was read)."""
        marked = [row["RowKey"][len(directory.ATTENTION):] for row in self.client.query_entities(
            "PartitionKey eq @pk and RowKey ge @first and RowKey lt @end",
            parameters={"pk": PARTITION, "first": directory.ATTENTION,
                        "end": directory.ATTENTION_END}, select=["RowKey"])]
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            rows = list(pool.map(self.get, marked)) if marked else []
        found = []
        for tenant_id, tenant in zip(marked, rows, strict=True):
            if tenant is not None and directory.needs_attention(
                    tenant.status, tenant.consecutive_failures):
                found.append(tenant)
            else:
                self._unmark(tenant_id, tenant)
        return sorted(found, key=attention)

    def _unmark(self, tenant_id: str, tenant: Tenant | None) -> None:
        """Remove a mark, with the row as read: unchanged (or still gone), or nothing."""
        ops: list[batch.Operation] = [("delete", {"PartitionKey": PARTITION,
                                                  "RowKey": directory.ATTENTION + tenant_id})]
        if tenant is not None:
            ops.insert(0, ("update", {"PartitionKey": PARTITION, "RowKey": tenant_id},
                           {"mode": UpdateMode.MERGE, **_guarded(tenant.etag)}))
        with contextlib.suppress(TableTransactionError):  # changed meanwhile: the next
            batch.submit_transaction(self.client, ops)  # reader checks it again

    def rebuild_directory(self) -> int:
        """Write the directory from the registry (`tools.backfill`): each name page
        replaced guarded by its ETag (a change meanwhile: that page again), a mark on
        every tenant needing attention, then the directory marked complete. Returns the
        tenants listed. Idempotent; the writes of the app keep it in step meanwhile."""
        listed = 0
        for first in "0123456789abcdef":
            key = directory.NAMES + first
            for _ in range(TRIES):
                try:
                    etag = self.client.get_entity(PARTITION, key).metadata["etag"]
                except ResourceNotFoundError:
                    etag = None
                tenants = list(self._rows_from(first))
                entries = {t.tenant_id: [t.display_name, str(t.status)] for t in tenants}
                page = directory.page_entity(PARTITION, key, entries)
                try:
                    if etag:
                        self.client.update_entity(page, mode=UpdateMode.REPLACE,
                                                  **_guarded(etag))
                    else:
                        self.client.create_entity(page)
                except (ResourceModifiedError, ResourceExistsError):
                    continue
                break
            else:
                raise RuntimeError(f"the directory page {key} kept changing")
            marks = [("upsert", directory.attention_entity(PARTITION, t.tenant_id),
                      {"mode": UpdateMode.REPLACE}) for t in tenants
                     if directory.needs_attention(t.status, t.consecutive_failures)]
            for n in range(0, len(marks), 100):
                batch.submit_transaction(self.client, marks[n:n + 100])
            listed += len(entries)
        self.client.upsert_entity(directory.built_entity(PARTITION), mode=UpdateMode.REPLACE)
        return listed

    def _rows_from(self, first: str) -> Iterator[Tenant]:
        """The tenants whose id starts with `first` (a hex digit)."""
        end = chr(ord(first) + 1)
        for entity in self.client.query_entities(
                "PartitionKey eq @pk and RowKey ge @first and RowKey lt @end",
                parameters={"pk": PARTITION, "first": first, "end": end}):
            yield _from_entity(entity)

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
        """MERGE many rows, 100 per transaction (one partition); a change the directory
        follows (a name, a status, a failure) is written on its own, with it."""
        ops: list[Any] = []
        for values in changes:
            if {"display_name", "status"} & values.keys() or \
                    directory.may_need_attention(values):
                values = dict(values)
                self.merge(values.pop("RowKey"), **values)
                continue
            entity = {"PartitionKey": PARTITION,
                      **{k: v if k == "RowKey" else _value(k, v)
                         for k, v in _cleared(values).items()}}
            ops.append(("upsert", entity, {"mode": UpdateMode.MERGE}))
            if len(ops) == 100:
                batch.submit_transaction(self.client, ops)
                ops = []
        if ops:
            batch.submit_transaction(self.client, ops)
