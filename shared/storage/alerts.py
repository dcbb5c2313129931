"""The Alerts table: partition <tenant id>, row <alert id> (plus an alert's overflow rows).

One place for every read of it (the portal's searches and counts, the SIEM feed's copy of a
stored alert) and for ingest's write of an alert's rows, so that a later index (issue 18)
changes this module only. The queries are bounded: at most `limit` rows are read, and the
caller is told when more matched."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.storage import batch
from shared.storage.alert_rows import OVERFLOW_MARK, read_alert
from shared.storage.keys import encode_key

# the indexed columns a search lists (never the alert bodies)
COLUMNS = ["PartitionKey", "RowKey", "AlertId", "Title", "Severity", "Status", "Category",
           "RbacGroupName", "ComputerDnsName", "DetectionSource", "AlertCreationTime",
           "LastUpdated"]


def bounded(rows: Iterable[Any], limit: int) -> tuple[list[Any], bool]:
    """At most `limit` of `rows`, and whether there were more."""
    found = []
    for row in rows:
        if len(found) >= limit:
            return found, True
        found.append(row)
    return found, False


# the columns of the fields triage changes, and their names in Defender's alert
TRIAGE_COLUMNS = {"Status": "status", "AssignedTo": "assignedTo",
                  "Classification": "classification", "Determination": "determination"}


def triage_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    return {**{name: row.get(column) for column, name in TRIAGE_COLUMNS.items()},
            "lastUpdateTime": row.get("Version")}


STORED_PER_QUERY = 14  # Azure allows 15 comparisons in a filter: the partition's and 14


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

    def _entity(self, tenant_id: str, row_key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.get_entity(tenant_id, row_key))
        except ResourceNotFoundError:
            return None

    def alert(self, tenant_id: str, alert_id: str) -> dict[str, Any] | None:
        """The whole stored alert (the JSON as received), None when it is not stored."""
        found = self.alert_and_schema(tenant_id, alert_id)
        return found[0] if found else None

    def alert_and_schema(self, tenant_id: str, alert_id: str
                         ) -> tuple[dict[str, Any], str] | None:
        """The whole stored alert and the schema of the API it came from ("mde" for
        rows written before the schema was kept), None when it is not stored: point
        reads of its main row and of its overflow rows (at most 3). Rows met mid-rewrite
        (of two versions) are read again once; still torn, the alert reads as not there."""
        key = encode_key(alert_id)
        for _ in range(2):
            main = self._entity(tenant_id, key)
            if main is None:
                return None
            extra = [self._entity(tenant_id, f"{key}{OVERFLOW_MARK}{n}")
                     for n in range(1, int(main.get("BodyRows") or 1))]
            try:
                return (read_alert(main, [row for row in extra if row is not None]),
                        str(main.get("Schema") or "mde"))
            except ValueError:
                continue
        return None
    def triage_fields(self, tenant_id: str, alert_id: str) -> dict[str, Any] | None:
        """The fields an analyst changes, as the hub stored them (by Defender's names,
        with the stored version as `lastUpdateTime`): what an audit entry's `before` is.
        None when the alert is not stored. One point read of five columns."""
        try:
            row = self.client.get_entity(tenant_id, encode_key(alert_id),
                                         select=[*TRIAGE_COLUMNS, "Version"])
        except ResourceNotFoundError:
            return None
        return triage_fields(row)

    def version(self, tenant_id: str, row_key: str) -> str | None:
        """The stored version of the alert at `row_key` (its Alerts row key), None when it
        is not stored: what an index entry is checked against (`alert_index.valid`)."""
        try:
            row = self.client.get_entity(tenant_id, row_key, select=["Version"])
        except ResourceNotFoundError:
            return None
        return str(row.get("Version") or "") or None

    def main_rows(self, tenant_id: str, after: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` of the tenant's rows after row key `after`, in key order, with the
        listed columns and `Version` (the index backfill's read); overflow rows
        included (the caller skips them, keeping its place)."""
        rows = self.client.query_entities(
            "PartitionKey eq @pk and RowKey gt @after", parameters={"pk": tenant_id,
                                                                    "after": after},
            select=[*COLUMNS, "Version"],
            results_per_page=min(1000, limit))
        return [dict(row) for row, _ in zip(rows, range(limit), strict=False)]
    def get_stored_many(self, tenant_id: str, alert_ids: Iterable[str]
                        ) -> dict[str, StoredAlert]:
        """The main rows of some of a tenant's alerts, by alert id (those stored): one
        query per STORED_PER_QUERY ids instead of a read each (the feed's batches)."""
        keys = sorted({encode_key(a): a for a in alert_ids}.items())
        found: dict[str, StoredAlert] = {}
        for start in range(0, len(keys), STORED_PER_QUERY):
            part = keys[start:start + STORED_PER_QUERY]
            params = {"pk": tenant_id, **{f"k{n}": key for n, (key, _) in enumerate(part)}}
            # spaces around the brackets: the SDK finds @names by splitting on spaces
            query = "PartitionKey eq @pk and ( " + " or ".join(
                f"RowKey eq @k{n}" for n in range(len(part))) + " )"
            by_key = dict(part)
            for row in self.client.query_entities(query, parameters=params):
                found[by_key[row["RowKey"]]] = stored(row)
        return found

    # ingest's write --------------------------------------------------------------------
    def store(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One transaction of alert rows (one tenant), each replacing what was there:
        idempotent, so a rerun of a chunk stores the same rows again, harmlessly."""
        return batch.submit_transaction(
            self.client, [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in rows])

    # the portal's reads ----------------------------------------------------------------
    def search(self, query: str, parameters: dict[str, Any], limit: int
               ) -> tuple[list[Any], bool]:
        """The listed columns of the rows matching an OData filter (one tenant's
        partition; see `AlertFilter.query`), at most `limit`, and whether more matched."""
        return bounded(self.client.query_entities(query, parameters=parameters,
                                                  select=COLUMNS, results_per_page=1000),
                       limit)

    def open_or_raised_since(self, tenant_id: str, first_day: str, limit: int
                             ) -> tuple[list[Any], bool]:
        """Severity, status and creation time of the tenant's open alerts and of those
        created on or after `first_day` (YYYY-MM-DD): the overview's counts."""
        return bounded(self.client.query_entities(
            "PartitionKey eq @pk and (Status eq 'New' or Status eq 'InProgress' "
            "or AlertCreationTime ge @day )", parameters={"pk": tenant_id, "day": first_day},
            select=["Severity", "Status", "AlertCreationTime"], results_per_page=1000), limit)
