"""Run history: one row per fetch run, newest first, kept for a number of days."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableClient

_MAX_TICKS = 10**19 - 1


def _row_key(when: datetime, run_id: str) -> str:
    ticks = int(when.timestamp() * 10_000_000)
    return f"{_MAX_TICKS - ticks:019d}:{run_id[:12]}"


@dataclass
class RunRecord:
    tenant_id: str
    run_id: str
    started: datetime
    duration_ms: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    api_calls: int = 0
    pages: int = 0
    outcome: str = "running"
    error: str = ""


class RunHistory:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def record(self, run: RunRecord) -> None:
        values = asdict(run)
        entity = {"PartitionKey": run.tenant_id, "RowKey": _row_key(run.started, run.run_id),
                  **{k: v for k, v in values.items() if k != "tenant_id"}}
        entity["error"] = entity["error"][:4000]
        self.client.upsert_entity(entity)

    def recent(self, tenant_id: str, limit: int = 50) -> list[RunRecord]:
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": tenant_id},
                                          results_per_page=limit)
        found = []
        for row in rows:
            found.append(RunRecord(tenant_id=tenant_id, **{
                k: row[k] for k in ("run_id", "started", "duration_ms", "new", "changed",
                                    "unchanged", "api_calls", "pages", "outcome", "error")
                if k in row}))
            if len(found) >= limit:
                break
        return found

    def prune(self, tenant_id: str, days: int, now: datetime | None = None) -> int:
        """Delete this tenant's runs older than `days` (they sort last)."""
        cutoff = _row_key((now or datetime.now(UTC)) - timedelta(days=days), "")
        old = list(self.client.query_entities(
            "PartitionKey eq @pk and RowKey gt @cut", parameters={"pk": tenant_id, "cut": cutoff},
            select=["PartitionKey", "RowKey"]))
        for start in range(0, len(old), 100):
            self.client.submit_transaction([("delete", e) for e in old[start:start + 100]])
        return len(old)
