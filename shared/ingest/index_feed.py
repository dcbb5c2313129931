"""The AlertIndex fed from the relay: a chunk of outbox events becomes the index writes
that put the index in step with the alert versions those events announce.

Why here and not in the fetch: writing the index next to the alert rows doubled the
entities the fetch wrote and cut ingest throughput by ~40% (BENCHMARKS.md, issue 18).
Each event carries what the index needs: the tenant, the alert id, its new version, the
listed fields in its summary, and (for an update that moved `lastUpdateTime`) the
replaced version in `changed`, whose entry is deleted.

A relay writes a chunk's entries right after renewing its lease. Should the write end
later than half the lease after that renewal, another relay may have taken the lease
and moved the same alerts on: the write may have put back an entry of a version already
replaced. Only then are the chunk's entries checked against the Alerts rows, and those
of a replaced version deleted (`repair`), so the index holds one entry per alert without
the portal ever reading the Alerts table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from shared.storage.alert_index import AlertIndex, Key, entry_of, key_of, repair
from shared.storage.alert_rows import INDEXED
from shared.storage.alerts import AlertRepository
from shared.storage.keys import encode_key

log = logging.getLogger("mssp_hub.relay")

# the Alerts columns an index entry is built from, with the summary field each copies
_COLUMNS = {column: field for column, field in INDEXED.items()
            if column in ("Title", "Severity", "Status", "Category", "RbacGroupName",
                          "ComputerDnsName", "DetectionSource", "AlertCreationTime")}


def _main_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the alert's Alerts main row an index entry reads, from the event."""
    alert = event.get("alert") or {}
    row: dict[str, Any] = {"PartitionKey": event["tenant"],
                           "RowKey": encode_key(str(event["alert_id"])),
                           "Version": event["version"]}
    for column, name in _COLUMNS.items():
        value = alert.get(name)
        if value is not None:
            row[column] = value if type(value) is str else str(value)
    return row


def index_changes(events: Iterable[Mapping[str, Any]]
                  ) -> tuple[list[dict[str, Any]], list[Key]]:
    """(entries to upsert, keys to delete) for a chunk of stored events (`AlertEvent.dump()`
    as the outbox keeps them), in order: an alert met twice keeps its last version's entry,
    and every version it replaced is deleted."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}  # (tenant, alert key) -> entry
    replaced: list[Key] = []
    for event in events:
        if event.get("type", "alert") != "alert":
            continue
        row = _main_row(event)
        entry = entry_of(row)
        old = (event.get("changed") or {}).get("lastUpdateTime")
        if old and old[0] and old[0] != event["version"]:
            replaced.append(key_of(row["PartitionKey"], row["RowKey"], str(old[0])))
        ours = (row["PartitionKey"], row["RowKey"])
        earlier = entries.get(ours)
        if earlier is not None and earlier["RowKey"] != entry["RowKey"]:
            replaced.append((earlier["PartitionKey"], earlier["RowKey"]))
        entries[ours] = entry
    return list(entries.values()), replaced


class IndexFeed:
    """The relay's writer of the AlertIndex (and, for a late write, its check)."""

    def __init__(self, index: AlertIndex, alerts: AlertRepository) -> None:
        self.index, self.alerts = index, alerts

    def record(self, events: list[dict[str, Any]], deadline: float) -> None:
        """Write a chunk's index changes; past `deadline` (time.monotonic), check them."""
        entries, replaced = index_changes(events)
        self.index.record(entries, replaced)
        if entries and time.monotonic() > deadline:
            removed = repair(self.alerts, self.index, entries)
            log.warning("late alert index write: %d of %d entries were outdated",
                        removed, len(entries))
