"""In-memory own-changes family: the marks of what the MSSP asked Defender to set
(tests/contract/test_own_changes.py holds it to the real repository's contract)."""

from __future__ import annotations

import copy
import threading

from shared.storage import own_marks
from shared.storage.memory.ingest import Faults
from shared.storage.own_marks import MAX_READ, Mark, row_key


class MemoryOwnMarks(own_marks.OwnMarks):
    """tenant id -> row key -> mark."""

    def __init__(self) -> None:
        self.partitions: dict[str, dict[str, Mark]] = {}
        self.lock = threading.Lock()
        self.faults = Faults()
        self.reads = 0

    def add(self, tenant_id: str, marks: list[Mark]) -> None:
        self.faults.check("add")
        with self.lock:
            rows = self.partitions.setdefault(tenant_id, {})
            for mark in marks:
                rows[row_key(mark)] = copy.deepcopy(mark)

    def around(self, tenant_id: str, first: str, last: str) -> list[Mark]:
        self.faults.check("around")
        with self.lock:
            self.reads += 1
            rows = self.partitions.get(tenant_id, {})
            found = [rows[k] for k in sorted(rows) if first <= k < f"{last}~"]
        return copy.deepcopy(found[:MAX_READ])

    def prune(self, tenant_id: str, before: str, limit: int = 100) -> int:
        with self.lock:
            rows = self.partitions.get(tenant_id, {})
            keys = [k for k in sorted(rows) if k < before][:limit]
            for key in keys:
                del rows[key]
        return len(keys)
