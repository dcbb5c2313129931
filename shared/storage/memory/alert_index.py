"""In-memory AlertIndex: entries by (day, row key), read in key order like the table.
`faults.fail_next("put" | "remove", error)` injects a crash before that write."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from shared.storage import alert_index
from shared.storage.alert_index import FILTERABLE, Key
from shared.storage.memory.ingest import Faults


class MemoryAlertIndex(alert_index.AlertIndex):
    def __init__(self) -> None:
        self.entries: dict[Key, dict[str, Any]] = {}
        self.lock = threading.Lock()  # the ingest writers write from several threads
        self.faults = Faults()
        self.reads = 0  # entries handed to readers
        self.progress: dict[str, str] = {}  # the backfill's place per tenant

    def put(self, entries: list[dict[str, Any]]) -> None:
        self.faults.check("put")
        with self.lock:
            for entry in entries:
                self.entries[(entry["PartitionKey"], entry["RowKey"])] = dict(entry)

    def remove(self, keys: Iterable[Key]) -> None:
        self.faults.check("remove")
        with self.lock:
            for key in keys:
                self.entries.pop(key, None)

    def read(self, day: str, after: str, where: Mapping[str, tuple[str, ...]], limit: int,
             per_request: int = 1000) -> Iterator[dict[str, Any]]:
        for column, values in where.items():
            if column not in FILTERABLE or not values:
                raise ValueError(f"not a filter of the index: {column}")
        with self.lock:
            found = sorted((rk, dict(e)) for (pk, rk), e in self.entries.items()
                           if pk == day and rk > after)
        count = 0
        for _, entry in found:
            if all(entry.get(c) in v for c, v in where.items()):
                if count >= limit:
                    return
                count += 1
                self.reads += 1
                yield entry

    def every(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries.values()]

    def backfilled_to(self, tenant_id: str) -> str | None:
        return self.progress.get(tenant_id)

    def mark_backfilled(self, tenant_id: str, after: str) -> None:
        self.faults.check("mark_backfilled")
        self.progress[tenant_id] = after
