"""OwnChangeMarks: what the MSSP asked Defender to set on which alerts, and when, so that
ingest can tell a change the MSSP made itself from one the customer made.

Partition <tenant id>; row key `<at>|<mark id>|<alert key>`, `at` being the hub's time
of the mark in Defender's normalized form: marks sort by time, so the marks a chunk of
fetched versions may concern are one range query (`around`), however many alerts the
chunk holds, and an old mark is never read again. Rows are only added (a retried `add`
writes the same rows again) and pruned a day after they stop mattering.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from shared import timefmt
from shared.storage import batch
from shared.storage.keys import encode_key

MAX_READ = 5_000  # marks one `around` reads at most: a bounded read, even after big bulks
_ROWS_PER_TRANSACTION = 100


@dataclass(frozen=True)
class Mark:
    """One alert's share of one action: the fields set (Defender's names; a comment is not
    a field, `comment` says whether one was added), by whom, when (normalized time)."""

    alert_id: str
    at: str
    fields: dict[str, Any]
    comment: bool
    actor: dict[str, str]  # {"id", "name", "via"}
    mark_id: str = ""


def row_key(mark: Mark) -> str:
    return f"{mark.at}|{mark.mark_id}|{encode_key(mark.alert_id)}"


def marks_of(alert_ids: Iterable[str], fields: dict[str, Any], comment: bool,
             actor: dict[str, str], at: datetime, mark_id: str | None = None) -> list[Mark]:
    """One action's marks, one per alert, sharing a mark id and a time."""
    mark_id = mark_id or uuid.uuid4().hex
    stamp = timefmt.from_datetime(at)
    return [Mark(str(a), stamp, dict(fields), comment, dict(actor), mark_id)
            for a in dict.fromkeys(alert_ids)]


def _entity(tenant_id: str, mark: Mark) -> dict[str, Any]:
    return {"PartitionKey": tenant_id, "RowKey": row_key(mark), "AlertId": mark.alert_id,
            "At": mark.at, "Fields": json.dumps(mark.fields), "Comment": mark.comment,
            "Actor": json.dumps(mark.actor)}


def _mark(row: Any) -> Mark:
    return Mark(str(row["AlertId"]), str(row["At"]), json.loads(row["Fields"]),
                bool(row.get("Comment")), json.loads(row["Actor"]),
                str(row["RowKey"]).split("|", 2)[1])


class OwnMarks:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def add(self, tenant_id: str, marks: list[Mark]) -> None:
        """The marks, in transactions of 100 (upserts: a retry writes the same rows)."""
        for start in range(0, len(marks), _ROWS_PER_TRANSACTION):
            batch.submit_transaction(self.client, [
                ("upsert", _entity(tenant_id, m), {"mode": UpdateMode.REPLACE})
                for m in marks[start:start + _ROWS_PER_TRANSACTION]])

    def around(self, tenant_id: str, first: str, last: str) -> list[Mark]:
        """Marks made from `first` through `last` (normalized times), oldest first: one
        query, at most MAX_READ rows."""
        rows = self.client.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": tenant_id, "lo": first, "hi": f"{last}~"},
            results_per_page=1000)
        return [_mark(row) for row, _ in zip(rows, range(MAX_READ), strict=False)]

    def prune(self, tenant_id: str, before: str, limit: int = 100) -> int:
        """Drop up to `limit` marks made before `before` (normalized time)."""
        rows = self.client.query_entities(
            "PartitionKey eq @pk and RowKey lt @hi", parameters={"pk": tenant_id,
                                                                 "hi": before},
            select=["PartitionKey", "RowKey"], results_per_page=limit)
        keys = [row["RowKey"] for row, _ in zip(rows, range(limit), strict=False)]
        if keys:
            batch.submit_transaction(self.client, [
                ("delete", {"PartitionKey": tenant_id, "RowKey": k}) for k in keys])
        return len(keys)
