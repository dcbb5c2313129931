"""In-memory Alerts table: same contract as shared/storage/alerts.py."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.storage.alerts import StoredAlert, stored
from shared.storage.keys import encode_key


class MemoryAlerts:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def put_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows as ingest writes them (shared/storage/alert_rows.alert_rows)."""
        for row in rows:
            self.rows[(row["PartitionKey"], row["RowKey"])] = dict(row)

    def get_stored(self, tenant_id: str, alert_id: str) -> StoredAlert | None:
        row = self.rows.get((tenant_id, encode_key(alert_id)))
        return stored(row) if row is not None else None
