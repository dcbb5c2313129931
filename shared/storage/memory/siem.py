"""In-memory SIEM storage: the feed's entries, ledger and prune mark; each output's
delivery state; the deliver queue.

Same contract as shared/storage/{siem_feed,siem_delivery}.py (tests/contract/test_siem.py),
each guarded by a lock so racing threads see one winner.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shared.messages import AlertEvent
from shared.siem.feed_model import Filters, bucket_of
from shared.storage.memory import new_etag
from shared.storage.siem_delivery import OutputState, SiemDeliveryRepository, StateChanged
from shared.storage.siem_feed import (
    LedgerStamp,
    alert_prefix,
    decode,
    decode_brief,
    entry_entity,
    entry_key,
    ledger_key,
    of_this_alert,
    one_tenant,
    tenant_of,
    view_entity,
    view_of,
)


def _passes(entity: Mapping[str, Any], filters: Filters) -> bool:
    for prop, values in (("Tenant", filters.tenants), ("Severity", filters.severities),
                         ("Status", filters.statuses)):
        if values and entity[prop] not in values:
            return False
    when = entity["LastUpdateTime"]
    return (not filters.since or when >= filters.since) and \
        (not filters.until or when <= filters.until)


class MemorySiemFeed:
    def __init__(self) -> None:
        self.partitions: dict[str, dict[str, dict[str, Any]]] = {}  # entries by hour
        self.ledger: dict[tuple[str, str], tuple[int, str]] = {}  # -> (stamp, etag)
        self.through: str | None = None
        self._lock = threading.Lock()

    # the ledger ---------------------------------------------------------------------------
    def stamp_once(self, event: AlertEvent, stamp: int) -> LedgerStamp | None:
        key = ledger_key(event)
        with self._lock:
            if key not in self.ledger:
                self.ledger[key] = (stamp, new_etag())
                return None
            earlier, etag = self.ledger[key]
        return LedgerStamp(earlier, etag)

    def stamp_all(self, events: Sequence[AlertEvent], stamp: int) -> bool:
        keys = [ledger_key(event) for event in events]
        with self._lock:
            if any(key in self.ledger for key in keys):
                return False
            for key in keys:
                self.ledger[key] = (stamp, new_etag())
        return True

    def restamp(self, event: AlertEvent, stamp: int, etag: str) -> bool:
        key = ledger_key(event)
        with self._lock:
            if key not in self.ledger or self.ledger[key][1] != etag:
                return False
            self.ledger[key] = (stamp, new_etag())
        return True

    def set_stamp(self, event: AlertEvent, stamp: int) -> None:
        with self._lock:
            self.ledger[ledger_key(event)] = (stamp, new_etag())

    # entries ------------------------------------------------------------------------------
    def has_entry(self, event: AlertEvent, stamp: int) -> bool:
        return entry_key(event, stamp) in self.partitions.get(bucket_of(stamp), {})

    def put_entry(self, event: AlertEvent, stamp: int,
                  raw: Mapping[str, bytes] | None = None) -> None:
        entity = entry_entity(event, stamp, raw)
        for row in (view_entity(entity), entity):  # the tenant's view first, as the real one
            with self._lock:
                self.partitions.setdefault(row["PartitionKey"], {})[row["RowKey"]] = row

    def put_entries(self, items: Sequence[tuple[AlertEvent, Mapping[str, bytes] | None]],
                    stamp: int) -> None:
        for event, raw in items:
            self.put_entry(event, stamp, raw)

    def drop_entry(self, event: AlertEvent, stamp: int) -> None:
        bucket = bucket_of(stamp)
        for pk in (bucket, view_of(bucket, tenant_of(event))):
            with self._lock:
                self.partitions.get(pk, {}).pop(entry_key(event, stamp), None)

    def entries(self, bucket: str, after: str, before: str | None, filters: Filters,
                page_size: int) -> Iterator[tuple[str, dict[str, Any]]]:
        tenant, filters = one_tenant(filters)
        with self._lock:
            rows = sorted(self.partitions.get(view_of(bucket, tenant) if tenant else bucket,
                                              {}).items())
        for key, entity in rows:
            if key > after and (before is None or key < before) and _passes(entity, filters):
                yield key, decode(entity)

    def of_alert(self, tenant_id: str, alert_id: str, days: Sequence[str], limit: int
                 ) -> list[dict[str, Any]]:
        lo, hi = alert_prefix(tenant_id, alert_id)
        wanted = {"L" + day for day in days}
        with self._lock:
            found = sorted(((rk, stamp) for (pk, rk), (stamp, _) in self.ledger.items()
                            if pk in wanted and lo <= rk < hi and of_this_alert(rk, lo)),
                           reverse=True)[:limit]
            rows = [self.partitions.get(bucket_of(stamp), {}).get(f"{stamp:016d}|{rk}")
                    for rk, stamp in found]
        return [decode_brief(row) for row in rows if row is not None]

    # retention ----------------------------------------------------------------------------
    def pruned_through(self) -> str | None:
        return self.through

    def mark_pruned(self, through: str) -> None:
        self.through = through

    def drop_hour(self, bucket: str) -> int:
        with self._lock:
            for pk in [pk for pk in self.partitions if pk.startswith(f"{bucket}|")]:
                del self.partitions[pk]
            return len(self.partitions.pop(bucket, {}))

    def copy_hour_to_views(self, bucket: str) -> int:
        with self._lock:
            rows = list(self.partitions.get(bucket, {}).values())
            for row in rows:
                copy = view_entity(row)
                self.partitions.setdefault(copy["PartitionKey"], {})[copy["RowKey"]] = copy
        return len(rows)

    def drop_ledger_day(self, day: str) -> int:
        with self._lock:
            keys = [k for k in self.ledger if k[0] == "L" + day]
            for key in keys:
                del self.ledger[key]
        return len(keys)


class MemorySiemDelivery(SiemDeliveryRepository):
    """The real repository's intentions (mark_queued, advance, ...) on rows in memory:
    only reading, creating and the ETag-guarded MERGE are replaced."""

    def __init__(self) -> None:  # no table client
        self.rows: dict[str, OutputState] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> OutputState | None:
        return self.rows.get(name)

    def create(self, name: str, bucket: str, after: str) -> OutputState:
        with self._lock:
            return self.rows.setdefault(name, OutputState(name, bucket, after, etag=new_etag()))

    def _update(self, state: OutputState, **changes: Any) -> OutputState:
        with self._lock:
            stored = self.rows.get(state.name)
            if stored is None or stored.etag != state.etag:
                raise StateChanged(f"siem output {state.name} changed under this run")
            # MERGE: the stored row with these columns changed (as the table does)
            self.rows[state.name] = dataclasses.replace(stored, etag=new_etag(), **changes)
            return self.rows[state.name]


class MemoryDeliverQueue:
    """Records each deliver request, in order."""

    def __init__(self) -> None:
        self.requested: list[str] = []

    def request(self, name: str) -> None:
        self.requested.append(name)
