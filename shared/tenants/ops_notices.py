"""Messages for the MSSP's operations address (tenant onboarded, consent revoked).

Recorded in the OpsNotices table (newest first, shared/storage/notices.py), shown in the
portal, and emailed to OPS_EMAIL by the digest timer through the mail transport: once
each, under the same ledger as notification emails (Notifier.send_ops_notices). With no
OPS_EMAIL or MAIL_TRANSPORT=none they are only recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.logsafe import clean
from shared.storage import notices as store
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.notices import NoticeRepository

OPS_NOTICES = tables.OPS_NOTICES  # where they are (named in shared/storage/tables.py)
SEND_WITHIN = timedelta(days=2)  # older unsent notices stay recorded, never emailed late


class OpsNotices:
    def __init__(self, notices: NoticeRepository, recipient: str) -> None:
        self.rows = notices
        self.recipient = recipient

    @classmethod
    def on(cls, storage: StorageConnection, recipient: str) -> OpsNotices:
        """On the real OpsNotices table (the wiring, and callers that build their own)."""
        return cls(NoticeRepository(tables.table(storage, tables.OPS_NOTICES)), recipient)

    new_key = staticmethod(store.new_key)

    def add(self, kind: str, tenant_id: str, subject: str, body: str,
            row_key: str = "") -> str:
        """Record a notice; with a `row_key` from new_key(), a repeat is a no-op."""
        row_key = row_key or store.new_key()
        self.rows.add(row_key, kind, tenant_id, self.recipient, clean(subject, 200),
                         body[:8000])
        return row_key

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.rows.recent(limit)

    def pending(self, limit: int = 100) -> list[dict[str, Any]]:
        """Unsent notices of the last SEND_WITHIN, oldest first."""
        return self.rows.pending(datetime.now(UTC) - SEND_WITHIN, limit)

    def mark(self, row_key: str, state: str) -> None:
        """Final outcome of emailing a notice: sent, or why not (then not tried again)."""
        self.rows.mark(row_key, state[:500])
