"""A repository over a table and its index table (the Incidents and Correlation families),
read and deleted through small primitives named by table ("index" or the main one), so
the in-memory fake overrides those and keeps every rule above them."""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient


class PairedTables:
    """The storage primitives both repositories read and delete with."""

    def __init__(self, table: TableClient, index: TableClient) -> None:
        self.table, self.index = table, index

    def _client(self, table: str) -> TableClient:
        return self.index if table == "index" else self.table

    def _get(self, table: str, pk: str, rk: str) -> tuple[dict[str, Any], str] | None:
        try:
            entity = self._client(table).get_entity(pk, rk)
        except ResourceNotFoundError:
            return None
        return dict(entity), entity.metadata["etag"]

    def _delete(self, table: str, pk: str, rk: str) -> None:
        self._client(table).delete_entity(pk, rk)  # no error when it is gone
