"""What the app keeps of one tenant besides its registry row: its alerts (partition
<tenant id> of Alerts) and its ingest state (partition <tenant id> of IngestState), for
the MSSP's offboarding: wait for a running fetch, then erase both, and the alerts'
entries in the portal's AlertIndex."""

from __future__ import annotations

from typing import Any

from azure.data.tables import TableClient, TableTransactionError

from shared.storage.alert_index import AlertIndex, Key, key_of
from shared.storage.alert_rows import OVERFLOW_MARK
from shared.storage.ingest_state import CURSOR, LEASE, IngestState


class TenantData:
    def __init__(self, alerts: TableClient, state: TableClient,
                 index: AlertIndex | None = None) -> None:
        self.alerts, self.state, self.index = alerts, state, index

    def lock(self, tenant_id: str, owner: str, seconds: int) -> bool:
        """Take the tenant's fetch lease: no fetch runs for it while `owner` holds it."""
        return IngestState(self.state, tenant_id).acquire_lease(owner, seconds)[0]

    def unlock(self, tenant_id: str, owner: str) -> None:
        IngestState(self.state, tenant_id).release_lease(owner)

    def erase(self, tenant_id: str) -> int:
        """Delete the tenant's alerts and ingest state (but the lease, held by whoever
        erases); rows already gone are fine. Returns the number of alerts deleted. The
        index entries go first (at the versions the rows hold), so a retry finds them."""
        if self.index is not None:
            self.index.remove(self._entries(tenant_id))
        deleted = _delete_partition(self.alerts, tenant_id)
        _delete_partition(self.state, tenant_id, keep={LEASE})
        return deleted

    def _entries(self, tenant_id: str) -> list[Key]:
        return [key_of(tenant_id, row["RowKey"], str(row["Version"]))
                for row in self.alerts.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": tenant_id},
                    select=["RowKey", "Version"])
                if row.get("Version") and OVERFLOW_MARK not in row["RowKey"]]

    def has_cursor(self, tenant_id: str) -> bool:
        """Whether a fetch of the tenant has stored where it stands."""
        return any(True for _ in self.state.query_entities(
            "PartitionKey eq @pk and RowKey eq @rk",
            parameters={"pk": tenant_id, "rk": CURSOR}))


def _delete_partition(table: Any, partition: str, keep: set[str] | None = None) -> int:
    """Delete every row of a partition but `keep`; returns the alerts among them (an
    alert's overflow rows, `<id>%~<n>`, are not counted)."""
    keys = [k for k in table.query_entities("PartitionKey eq @pk",
                                            parameters={"pk": partition},
                                            select=["PartitionKey", "RowKey"])
            if k["RowKey"] not in (keep or set())]
    for start in range(0, len(keys), 100):
        chunk = keys[start:start + 100]
        try:
            table.submit_transaction([("delete", k) for k in chunk])
        except TableTransactionError:  # one was gone: the rest one by one
            for key in chunk:
                table.delete_entity(key["PartitionKey"], key["RowKey"])
    return sum(1 for k in keys if "%~" not in k["RowKey"])
