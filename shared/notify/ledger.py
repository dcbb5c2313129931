"""At most one email per (rule, alert, alert version), across redeliveries and racing
workers: a row per delivery, claimed with an ETag before sending, marked sent after."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

CLAIM_SECONDS = 120  # a claim older than this was abandoned by a dead worker


class Busy(RuntimeError):
    """Another worker is sending this email right now; retry later to confirm it."""


def delivery_key(rule_id: str, event_id: str) -> tuple[str, str]:
    return rule_id, hashlib.sha256(event_id.encode()).hexdigest()


class Ledger:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def claim(self, rule_id: str, event_id: str, detail: dict[str, Any]) -> str | None:
        """An ETag to send under, or None if this email was already sent (or given up)."""
        pk, rk = delivery_key(rule_id, event_id)
        now = datetime.now(UTC)
        entity = {"PartitionKey": pk, "RowKey": rk, "State": "sending", "ClaimedAt": now,
                  "EventId": event_id[:500], **detail}
        try:
            return self.client.create_entity(entity)["etag"]
        except ResourceExistsError:
            pass
        try:
            row = self.client.get_entity(pk, rk)
        except ResourceNotFoundError:
            raise Busy("ledger row vanished") from None
        if row["State"] in ("sent", "refused", "digested"):
            return None
        if row["ClaimedAt"] > now - timedelta(seconds=CLAIM_SECONDS):
            raise Busy(f"another worker is sending {rule_id}/{event_id}")
        try:  # take over an abandoned claim, exactly one worker wins
            return self.client.update_entity(entity, mode=UpdateMode.REPLACE,
                                             etag=row.metadata["etag"],
                                             match_condition=MatchConditions.IfNotModified
                                             )["etag"]
        except HttpResponseError:
            raise Busy("claim taken over by another worker") from None

    def finish(self, rule_id: str, event_id: str, etag: str, state: str, note: str = ""
               ) -> None:
        """sent | refused (permanent failure, recorded, not retried) | digested."""
        pk, rk = delivery_key(rule_id, event_id)
        self.client.update_entity({"PartitionKey": pk, "RowKey": rk, "State": state,
                                   "FinishedAt": datetime.now(UTC), "Note": note[:2000]},
                                  mode=UpdateMode.MERGE, etag=etag,
                                  match_condition=MatchConditions.IfNotModified)

    def release(self, rule_id: str, event_id: str, etag: str) -> None:
        """A transient failure: forget the claim so a retry can send."""
        pk, rk = delivery_key(rule_id, event_id)
        with contextlib.suppress(HttpResponseError):
            self.client.delete_entity(pk, rk, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
