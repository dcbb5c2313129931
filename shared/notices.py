"""Messages for the MSSP's operations address (tenant onboarded, consent revoked).

Recorded in the OpsNotices table (newest first), shown in the portal, and emailed to
OPS_EMAIL by the digest timer through the mail transport: once each, under the same
ledger as notification emails (Notifier.send_ops_notices). With no OPS_EMAIL or
MAIL_TRANSPORT=none they are only recorded.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import UpdateMode

from shared.logsafe import clean
from shared.storage import tables
from shared.storage.connection import StorageConnection

OPS_NOTICES = "OpsNotices"
_MAX_TICKS = 10**19 - 1
SEND_WITHIN = timedelta(days=2)  # older unsent notices stay recorded, never emailed late


def _row_key(when: datetime) -> str:
    return f"{_MAX_TICKS - int(when.timestamp() * 10**7):019d}"


class OpsNotices:
    def __init__(self, storage: StorageConnection, recipient: str) -> None:
        self.table = tables.table(storage, OPS_NOTICES)
        self.recipient = recipient

    @staticmethod
    def new_key() -> str:
        """A notice's row key (newest first), chosen before it is written so that a step
        that may be repeated writes it once."""
        return f"{_row_key(datetime.now(UTC))}:{uuid.uuid4().hex[:8]}"

    def add(self, kind: str, tenant_id: str, subject: str, body: str,
            row_key: str = "") -> str:
        """Record a notice; with a `row_key` from new_key(), a repeat is a no-op."""
        row_key = row_key or self.new_key()
        with contextlib.suppress(ResourceExistsError):  # the attempt that died wrote it
            self.table.create_entity({"PartitionKey": "notice", "RowKey": row_key,
                                      "Kind": kind, "Tenant": tenant_id,
                                      "To": self.recipient, "Subject": clean(subject, 200),
                                      "Body": body[:8000], "CreatedAt": datetime.now(UTC),
                                      "Sent": False, "State": "recorded"})
        return row_key

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        found = []
        for row in self.table.query_entities("PartitionKey eq 'notice'",
                                             results_per_page=limit):
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found

    def pending(self, limit: int = 100) -> list[dict[str, Any]]:
        """Unsent notices of the last SEND_WITHIN, oldest first."""
        cutoff = _row_key(datetime.now(UTC) - SEND_WITHIN)
        rows = self.table.query_entities(
            "PartitionKey eq 'notice' and RowKey lt @cut and Sent eq false",
            parameters={"cut": cutoff}, results_per_page=limit)
        found = []
        for row in rows:
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found[::-1]

    def mark(self, row_key: str, state: str) -> None:
        """Final outcome of emailing a notice: sent, or why not (then not tried again)."""
        self.table.update_entity({"PartitionKey": "notice", "RowKey": row_key, "Sent": True,
                                  "State": state[:500], "SentAt": datetime.now(UTC)},
                                 mode=UpdateMode.MERGE)
