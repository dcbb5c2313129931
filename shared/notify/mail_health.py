"""Can mail be sent? One AppHealth row (shared/storage/app_health.py), written when a send
fails for a reason that may pass (server down) and removed by the next success: what
/api/health and the portal read, and what a poisoned notify message is blamed on."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

CURRENT = timedelta(minutes=15)  # a failure not seen again for this long is over
CLEAR_EVERY = 60.0  # seconds: a success clears another worker's failure within this


class MailHealthStore(Protocol):
    def mail_failed(self, reason: str, at: datetime | None = None) -> None: ...
    def mail_works(self) -> None: ...
    def mail_failure(self, **probe: Any) -> tuple[str, datetime] | None: ...


class MailHealth:
    def __init__(self, store: MailHealthStore) -> None:
        self.store = store
        self._cleared_at = float("-inf")  # monotonic time of this process's last clear

    def failed(self, reason: str) -> None:
        self.store.mail_failed(reason)
        self._cleared_at = float("-inf")

    def ok(self) -> None:
        """Clear the failure (any worker's): at once after this process's own failure,
        else at most once a CLEAR_EVERY, not a Table call for every email."""
        now = time.monotonic()
        if now - self._cleared_at < CLEAR_EVERY:
            return
        self.store.mail_works()
        self._cleared_at = now


def mail_failure(store: MailHealthStore, **probe: Any) -> dict[str, Any] | None:
    """{"reason", "at"} of a mail failure in the last CURRENT, or None when mail works
    (or nothing was sent lately)."""
    found = store.mail_failure(**probe)
    if found is None or found[1] < datetime.now(UTC) - CURRENT:
        return None
    return {"reason": found[0], "at": found[1]}
