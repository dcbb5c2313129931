"""The Alerts table: each tenant's alerts, as ingest stores them (shared/storage/alert_rows.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.storage.keys import encode_key


@dataclass(frozen=True)
class StoredAlert:
    """An alert's main row as stored: its version, how many rows its compressed body
    spans, and the main row's body chunks (Body00, Body01...) as they are."""

    version: str
    body_rows: int = 1
    body: dict[str, bytes] = field(default_factory=dict)


def stored(row: Mapping[str, Any]) -> StoredAlert:
    """The StoredAlert of an Alerts main row."""
    return StoredAlert(str(row.get("Version") or ""), int(row.get("BodyRows", 1)),
                       {k: bytes(v) for k, v in row.items()
                        if k.startswith("Body") and k[4:].isdigit()})


class AlertRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def get_stored(self, tenant_id: str, alert_id: str) -> StoredAlert | None:
        """The alert's main row (read-only), None when it is not stored."""
        try:
            return stored(self.client.get_entity(tenant_id, encode_key(alert_id)))
        except ResourceNotFoundError:
            return None
