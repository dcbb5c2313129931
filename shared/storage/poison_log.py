"""The PoisonLog table: messages the host gave up on, partition <queue name>, newest
first (the row key counts down from the time), kept with the reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from azure.data.tables import TableClient

from shared.storage.limits import clip_text

_MAX_TICKS = 10**19 - 1


def _ticks_key(when: datetime) -> str:
    return f"{_MAX_TICKS - int(when.timestamp() * 10**7):019d}"


def row_key_of(at: datetime, message_id: str | None) -> str:
    """Newest first by `at`; the message's id when known, else a random suffix."""
    return f"{_ticks_key(at)}:{message_id or uuid.uuid4().hex[:8]}"


class PoisonLogRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def add(self, queue_name: str, body: str, reason: str, tenant_id: str,
            at: datetime | None = None, message_id: str | None = None) -> str:
        """Keep one given-up message (its body clipped to what a row holds); returns its
        row key. With `message_id` (and `at`, when it was given up on) the row key is the
        message's own, so keeping the same message again replaces its row."""
        now = at or datetime.now(UTC)
        row_key = row_key_of(now, message_id)
        self.client.upsert_entity({"PartitionKey": queue_name, "RowKey": row_key,
                                   "Body": clip_text(body), "Reason": reason,
                                   "Tenant": tenant_id, "At": now})
        return row_key

    def recent(self, queue_name: str, limit: int = 50) -> list[dict[str, Any]]:
        """The queue's newest rows, newest first."""
        rows = self.client.query_entities("PartitionKey eq @pk",
                                          parameters={"pk": queue_name})
        found = []
        for row in rows:
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found

    def counts_since(self, since: datetime, limit: int) -> dict[str, int]:
        """Rows kept since `since`, per queue, counting at most `limit` rows (only the
        rows after `since` are read: they sort first in every partition)."""
        counts: dict[str, int] = {}
        rows = self.client.query_entities("RowKey lt @cut",
                                          parameters={"cut": _ticks_key(since)},
                                          select=["PartitionKey"])
        for n, row in enumerate(rows):
            if n >= limit:
                break
            counts[row["PartitionKey"]] = counts.get(row["PartitionKey"], 0) + 1
        return counts
