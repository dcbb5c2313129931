"""Can mail be sent? One AppHealth row, written when a send fails for a reason that may
pass (server down) and removed by the next success: what /api/health and the portal read,
and what a poisoned notify message is blamed on."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient

PK, RK = "app", "mail"
CURRENT = timedelta(minutes=15)  # a failure not seen again for this long is over
CLEAR_EVERY = 60.0  # seconds: a success clears another worker's failure within this


class MailHealth:
    def __init__(self, client: TableClient) -> None:
        self.client = client
        self._cleared_at = float("-inf")  # monotonic time of this process's last clear

    def failed(self, reason: str) -> None:
        """Best effort: the failure itself is what the caller reports."""
        with contextlib.suppress(HttpResponseError):
            self.client.upsert_entity({"PartitionKey": PK, "RowKey": RK,
                                       "Reason": reason[:1000], "At": datetime.now(UTC)})
        self._cleared_at = float("-inf")

    def ok(self) -> None:
        """Clear the failure (any worker's): at once after this process's own failure,
        else at most once a CLEAR_EVERY, not a Table call for every email."""
        now = time.monotonic()
        if now - self._cleared_at < CLEAR_EVERY:
            return
        with contextlib.suppress(ResourceNotFoundError, HttpResponseError):
            self.client.delete_entity(PK, RK)
        self._cleared_at = now


def mail_failure(client: TableClient, **probe: Any) -> dict[str, Any] | None:
    """{"reason", "at"} of a mail failure in the last CURRENT, or None when mail works
    (or nothing was sent lately)."""
    try:
        row = client.get_entity(PK, RK, **probe)
    except ResourceNotFoundError:
        return None
    if row["At"] < datetime.now(UTC) - CURRENT:
        return None
    return {"reason": row.get("Reason", ""), "at": row["At"]}
