"""In-memory Incidents and IncidentIndex: the real repository's logic on dicts with ETags.
`faults.fail_next("transact" | "put_index" | "delete", error)` injects a crash before
that write."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from shared.storage import incidents
from shared.storage.errors import StateChanged
from shared.storage.memory import new_etag
from shared.storage.memory.ingest import Faults

Rows = dict[tuple[str, str], tuple[dict[str, Any], str]]


class MemoryIncidents(incidents.IncidentRepository):
    def __init__(self) -> None:
        self.rows: dict[str, Rows] = {"incidents": {}, "index": {}}
        self.lock = threading.Lock()
        self.faults = Faults()

    def _get(self, table: str, pk: str, rk: str) -> tuple[dict[str, Any], str] | None:
        with self.lock:
            found = self.rows[table].get((pk, rk))
            return (dict(found[0]), found[1]) if found else None

    def _range(self, table: str, pk: str, low: str, high: str,
               where: dict[str, tuple[str, ...]] | None = None, limit: int | None = None
               ) -> Iterator[dict[str, Any]]:
        with self.lock:
            found = sorted((rk, dict(e)) for (p, rk), (e, _) in self.rows[table].items()
                           if p == pk and low < rk < high)
        count = 0
        for _, entity in found:
            if all(entity.get(c) in v for c, v in (where or {}).items()):
                if limit is not None and count >= limit:
                    return
                count += 1
                yield entity

    def _cursor_and_outbox(self, pk: str) -> list[tuple[dict[str, Any], str]]:
        with self.lock:
            return [(dict(e), etag) for (p, rk), (e, etag) in sorted(
                self.rows["incidents"].items())
                if p == pk and (rk == incidents.CURSOR or rk.startswith(incidents.OUTBOX))]

    def _transact(self, pk: str, ops: list[tuple[str, dict[str, Any], str | None]]) -> str:
        self.faults.check("transact")
        with self.lock:
            table = self.rows["incidents"]
            for kind, entity, etag in ops:
                key = (entity["PartitionKey"], entity["RowKey"])
                if kind == "create" and key in table:
                    raise StateChanged(f"incidents of {pk}: {key} exists")
                if kind == "update" and (key not in table or table[key][1] != etag):
                    raise StateChanged(f"incidents of {pk}: {key} changed")
            last = ""
            for _, entity, _ in ops:
                last = new_etag()
                table[(entity["PartitionKey"], entity["RowKey"])] = (dict(entity), last)
            return last

    def _put_index(self, entity: dict[str, Any]) -> None:
        self.faults.check("put_index")
        with self.lock:
            self.rows["index"][(entity["PartitionKey"], entity["RowKey"])] = (
                dict(entity), new_etag())

    def _delete(self, table: str, pk: str, rk: str) -> None:
        self.faults.check("delete")
        with self.lock:
            self.rows[table].pop((pk, rk), None)
