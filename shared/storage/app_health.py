"""AppHealth rows that say why the app cannot do its work: the mail row (app/mail),
written when a send fails for a reason that may pass and removed when mail works again;
and the identity row (app/identity), written when the MSSP's own app credential is
refused (no tenant can be fetched), and read against the last successful fetch."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient

PK, MAIL, IDENTITY = "app", "mail", "identity"


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

    def identity_failed(self, reason: str, error: str, at: datetime | None = None) -> None:
        """The MSSP app's credential was refused: one app-wide error, not a tenant's."""
        self.client.upsert_entity({"PartitionKey": PK, "RowKey": IDENTITY, "Reason": reason,
                                   "Error": error, "At": at or datetime.now(UTC)})

    def identity_failure(self, **probe: Any) -> dict[str, Any] | None:
        """{"reason", "error", "at"} of the last refusal of the app's credential, however
        old (the reader compares it with the last success); `probe` as in mail_failure."""
        try:
            row = self.client.get_entity(PK, IDENTITY, **probe)
        except ResourceNotFoundError:
            return None
        return {"reason": row["Reason"], "error": row.get("Error", ""), "at": row["At"]}
