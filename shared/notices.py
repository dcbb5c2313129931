"""Messages for the MSSP's operations address (tenant onboarded, consent revoked).

Recorded in the OpsNotices table; the mail transport of the notifications work sends the
pending ones. Until then they are visible in this table and in the admin API.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.logsafe import clean
from shared.storage import tables
from shared.storage.connection import StorageConnection

OPS_NOTICES = "OpsNotices"
_MAX_TICKS = 10**19 - 1


class OpsNotices:
    def __init__(self, storage: StorageConnection, recipient: str) -> None:
        self.table = tables.table(storage, OPS_NOTICES)
        self.recipient = recipient

    def add(self, kind: str, tenant_id: str, subject: str, body: str) -> str:
        now = datetime.now(UTC)
        row_key = f"{_MAX_TICKS - int(now.timestamp() * 10**7):019d}:{uuid.uuid4().hex[:8]}"
        self.table.create_entity({"PartitionKey": "notice", "RowKey": row_key, "Kind": kind,
                                  "Tenant": tenant_id, "To": self.recipient,
                                  "Subject": clean(subject, 200), "Body": body[:8000],
                                  "CreatedAt": now, "Sent": False})
        return row_key

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        found = []
        for row in self.table.query_entities("PartitionKey eq 'notice'"):
            found.append(dict(row))
            if len(found) >= limit:
                break
        return found
