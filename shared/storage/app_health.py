"""AppHealth rows that say why the app cannot do its work: here, the mail row (app/mail),
written when a send fails for a reason that may pass and removed when mail works again."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient

PK, MAIL = "app", "mail"


class AppHealth:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def mail_failed(self, reason: str, at: datetime | None = None) -> None:
        """Best effort (a storage error is swallowed): the failure itself is what the
        caller reports."""
        with contextlib.suppress(HttpResponseError):
            self.client.upsert_entity({"PartitionKey": PK, "RowKey": MAIL,
                                       "Reason": reason[:1000], "At": at or datetime.now(UTC)})

    def mail_works(self) -> None:
        """Remove the mail failure, if any (best effort)."""
        with contextlib.suppress(ResourceNotFoundError, HttpResponseError):
            self.client.delete_entity(PK, MAIL)

    def mail_failure(self, **probe: Any) -> tuple[str, datetime] | None:
        """(reason, when) of the last recorded mail failure, however old. `probe`: the
        health check's request options (no retries, short timeouts)."""
        try:
            row = self.client.get_entity(PK, MAIL, **probe)
        except ResourceNotFoundError:
            return None
        return row.get("Reason", ""), row["At"]
