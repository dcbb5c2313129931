"""The OpsNotices table: one partition of notices for the MSSP's operations address, row
keys newest first, each row written once (its key chosen before)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

PARTITION = "notice"
_MAX_TICKS = 10**19 - 1


def time_key(when: datetime) -> str:
    """The row key prefix of a notice made at `when`: later sorts first."""
    return f"{_MAX_TICKS - int(when.timestamp() * 10**7):019d}"


def new_key() -> str:
    """A notice's row key (newest first), chosen before it is written so that a step that
    may be repeated writes it once."""
    return f"{time_key(datetime.now(UTC))}:{uuid.uuid4().hex[:8]}"


class NoticeRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def add(self, row_key: str, kind: str, tenant_id: str, to: str, subject: str,
            body: str) -> None:
        """Record a notice under `row_key`; a row already there (the attempt that died
        wrote it) is left as it is."""
        with contextlib.suppress(ResourceExistsError):
            self.client.create_entity({"PartitionKey": PARTITION, "RowKey": row_key,
                                       "Kind": kind, "Tenant": tenant_id, "To": to,
                                       "Subject": subject, "Body": body,
                                       "CreatedAt": datetime.now(UTC), "Sent": False,
                                       "State": "recorded"})

    def get(self, row_key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.get_entity(PARTITION, row_key))
        except ResourceNotFoundError:
            return None

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` notices, newest first."""
        found = []
        for row in self.client.query_entities(f"PartitionKey eq '{PARTITION}'",
                                              results_per_page=limit):
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found

    def pending(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        """Unsent notices made after `since`, at most `limit` of the newest, oldest first."""
        rows = self.client.query_entities(
            f"PartitionKey eq '{PARTITION}' and RowKey lt @cut and Sent eq false",
            parameters={"cut": time_key(since)}, results_per_page=limit)
        found = []
        for row in rows:
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found[::-1]

    def mark(self, row_key: str, state: str) -> None:
        """The final outcome of emailing a notice: it is not tried again."""
        self.client.update_entity({"PartitionKey": PARTITION, "RowKey": row_key,
                                   "Sent": True, "State": state,
                                   "SentAt": datetime.now(UTC)}, mode=UpdateMode.MERGE)
