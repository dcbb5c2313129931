"""In-memory AuditTrail: the same keys as the table (so continuations are the same), the
rows in dicts. `reads` counts entries handed to readers."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from shared.storage import audit
from shared.triage.model import AuditEntry


class MemoryAuditTrail(audit.AuditTrail):
    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], dict[str, Any]] = {}  # (alert partition, action)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}  # (partition, row key)
        self.intents: dict[tuple[str, str], datetime] = {}
        self.lock = threading.Lock()
        self.reads = 0

    def record(self, entry: AuditEntry) -> AuditEntry:
        pk = audit.subject_partition(entry.tenant_id, entry.alert_id, entry.incident_id)
        with self.lock:
            claim = self.claims.setdefault((pk, audit.claim_key(entry.action_id)),
                                           audit.to_row(entry))
            stored = audit.from_row(claim)
            row = {**claim, "RowKey": audit.row_key(stored)}
            for partition in (pk, audit.tenant_partition(stored.tenant_id), audit.EVERY):
                self.rows[(partition, row["RowKey"])] = {**row, "PartitionKey": partition}
            return stored

    def intend(self, tenant_id: str, alert_id: str, action_id: str, at: datetime, *,
               incident_id: str = "") -> datetime | None:
        key = (audit.subject_partition(tenant_id, alert_id, incident_id),
               audit.INTENT + action_id)
        with self.lock:
            if key in self.intents:
                return self.intents[key]
            self.intents[key] = at.astimezone(UTC)
            return None

    def recorded(self, tenant_id: str, alert_id: str, action_id: str, *,
                 incident_id: str = "") -> AuditEntry | None:
        with self.lock:
            found = self.claims.get((audit.subject_partition(tenant_id, alert_id,
                                                             incident_id),
                                     audit.claim_key(action_id)))
        return audit.from_row(found) if found else None

    def for_alert(self, tenant_id: str, alert_id: str, limit: int = 100) -> list[AuditEntry]:
        rows = self._partition(audit.alert_partition(tenant_id, alert_id))
        return [audit.from_row(r) for r in self._take(rows, limit)]

    def for_incident(self, tenant_id: str, incident_id: str, limit: int = 100
                     ) -> list[AuditEntry]:
        rows = self._partition(audit.incident_partition(tenant_id, incident_id))
        return [audit.from_row(r) for r in self._take(rows, limit)]

    def page(self, tenant_id: str | None = None, actor_id: str | None = None,
             outcome: str | None = None, since: datetime | None = None,
             until: datetime | None = None, continuation: str | None = None,
             limit: int = 50) -> tuple[list[AuditEntry], str | None]:
        if continuation and not audit.valid_continuation(continuation):
            raise ValueError("not a continuation of the audit trail")
        limit = max(1, min(audit.MAX_LIMIT, limit))
        low, below = audit.bounds(since, until)
        rows = [r for r in self._partition(audit.tenant_partition(tenant_id) if tenant_id
                                           else audit.EVERY)
                if (not continuation or r["RowKey"] > continuation)
                and (low is None or r["RowKey"] >= low)
                and (below is None or r["RowKey"] < below)
                and (actor_id is None or r["ActorId"] == actor_id)
                and (outcome is None or r["Outcome"] == outcome)]
        taken = list(self._take(rows, limit + 1))
        more = len(taken) > limit
        taken = taken[:limit]
        return ([audit.from_row(r) for r in taken],
                str(taken[-1]["RowKey"]) if more else None)

    def _partition(self, partition: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for (pk, _), r in sorted(self.rows.items()) if pk == partition]

    def _take(self, rows: list[dict[str, Any]], limit: int) -> Iterator[Mapping[str, Any]]:
        for row in rows[:limit]:
            self.reads += 1
            yield row
