"""In-memory Correlation and CorrelationIndex: the real store's logic on dicts with ETags.
`faults.fail_next("transact" | "put" | "delete" | "create", error)` injects a crash
before that write; `operations` counts the storage calls (reads and writes)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from shared.storage import correlation
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.memory import new_etag
from shared.storage.memory.ingest import Faults

Rows = dict[tuple[str, str], tuple[dict[str, Any], str]]


class MemoryCorrelation(correlation.CorrelationStore):
    def __init__(self) -> None:
        self.rows: dict[str, Rows] = {"table": {}, "index": {}}
        self.lock = threading.Lock()
        self.faults = Faults()
        self.operations: Counter[str] = Counter()

    def _get(self, table: str, pk: str, rk: str) -> tuple[dict[str, Any], str] | None:
        self.operations["get"] += 1
        with self.lock:
            found = self.rows[table].get((pk, rk))
            return (dict(found[0]), found[1]) if found else None

    def _range(self, table: str, pk: str, low: str, high: str, limit: int | None = None
               ) -> Iterator[tuple[dict[str, Any], str]]:
        self.operations["query"] += 1
        with self.lock:
            found = sorted((rk, dict(e), etag) for (p, rk), (e, etag)
                           in self.rows[table].items() if p == pk and low < rk < high)
        for count, (_, entity, etag) in enumerate(found):
            if limit is not None and count >= limit:
                return
            yield entity, etag

    def _transact(self, pk: str, ops: list[tuple[str, dict[str, Any], str | None]]) -> str:
        self.faults.check("transact")
        self.operations["transaction"] += 1
        with self.lock:
            table = self.rows["table"]
            for n, (kind, entity, etag) in enumerate(ops):
                key = (entity["PartitionKey"], entity["RowKey"])
                if kind == "create" and key in table:
                    if n == 0:
                        raise AlreadyExists(f"{pk}: {key[1]}")
                    raise StateChanged(f"correlation of {pk}: {key} exists")
                if kind in ("update", "merge") and (key not in table or table[key][1] != etag):
                    raise StateChanged(f"correlation of {pk}: {key} changed")
            last = ""
            for kind, entity, _ in ops:
                key = (entity["PartitionKey"], entity["RowKey"])
                last = new_etag()
                base = dict(table[key][0]) if kind == "merge" else {}  # else replaced
                table[key] = ({**base, **entity}, last)
            return last

    def _put(self, table: str, entity: dict[str, Any]) -> None:
        self.faults.check("put")
        self.operations["put"] += 1
        with self.lock:
            self.rows[table][(entity["PartitionKey"], entity["RowKey"])] = (
                dict(entity), new_etag())

    def _create(self, table: str, entity: dict[str, Any]) -> None:
        self.faults.check("create")
        self.operations["put"] += 1
        with self.lock:
            key = (entity["PartitionKey"], entity["RowKey"])
            if key in self.rows[table]:
                raise AlreadyExists(f"{key}")
            self.rows[table][key] = (dict(entity), new_etag())

    def _delete(self, table: str, pk: str, rk: str) -> None:
        self.faults.check("delete")
        self.operations["delete"] += 1
        with self.lock:
            self.rows[table].pop((pk, rk), None)
