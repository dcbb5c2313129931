"""At most one email per (rule, alert, alert version), across redeliveries and racing
workers: a row per delivery, claimed with an ETag before sending, marked after.

The row keeps the time of its first claim: a repeat after a crash or a transient failure
is built with the same Date (and the same Message-ID, see render.message_id), so it is the
same message again, which mail clients show once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

CLAIM_SECONDS = 120  # a claim older than this was abandoned by a dead worker
FINAL = ("sent", "refused", "failed", "digested")


class Busy(RuntimeError):
    """Another worker is sending this email right now; retry later to confirm it."""


@dataclass(frozen=True)
class Claim:
    etag: str
    first_at: datetime  # the Date of the email, on every attempt


def delivery_key(rule_id: str, event_id: str) -> tuple[str, str]:
    return rule_id, hashlib.sha256(event_id.encode()).hexdigest()


class Ledger:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def claim(self, rule_id: str, event_id: str, detail: dict[str, Any]) -> Claim | None:
        """A claim to send under, or None if this email was already sent (or given up)."""
        pk, rk = delivery_key(rule_id, event_id)
        now = datetime.now(UTC)
        entity = {"PartitionKey": pk, "RowKey": rk, "State": "sending", "ClaimedAt": now,
                  "FirstClaimedAt": now, "EventId": event_id[:500], **detail}
        try:
            return Claim(self.client.create_entity(entity)["etag"], now)
        except ResourceExistsError:
            pass
        try:
            row = self.client.get_entity(pk, rk)
        except ResourceNotFoundError:
            raise Busy("ledger row vanished") from None
        if row["State"] in FINAL:
            return None
        if row["State"] == "sending" and row["ClaimedAt"] > now - timedelta(
                seconds=CLAIM_SECONDS):
            raise Busy(f"another worker is sending {rule_id}/{event_id}")
        # a transient failure ("retry") or an abandoned claim: exactly one worker takes it
        entity["FirstClaimedAt"] = row.get("FirstClaimedAt") or row["ClaimedAt"]
        try:
            etag = self.client.update_entity(entity, mode=UpdateMode.REPLACE,
                                              etag=row.metadata["etag"],
                                              match_condition=MatchConditions.IfNotModified
                                              )["etag"]
        except HttpResponseError:
            raise Busy("claim taken over by another worker") from None
        return Claim(etag, entity["FirstClaimedAt"])

    def finish(self, rule_id: str, event_id: str, claim: Claim, state: str, note: str = "",
               refused: list[dict[str, str]] | None = None) -> None:
        """sent (maybe with some recipients refused) | refused (nobody could get it) |
        failed (the email could not be built) | digested. Final: never retried."""
        pk, rk = delivery_key(rule_id, event_id)
        self.client.update_entity({"PartitionKey": pk, "RowKey": rk, "State": state,
                                   "FinishedAt": datetime.now(UTC), "Note": note[:2000],
                                   "Refused": json.dumps(refused or [])[:30000]},
                                  mode=UpdateMode.MERGE, etag=claim.etag,
                                  match_condition=MatchConditions.IfNotModified)

    def release(self, rule_id: str, event_id: str, claim: Claim, reason: str) -> None:
        """A transient failure: a retry may send at once (keeping the first claim's Date)."""
        pk, rk = delivery_key(rule_id, event_id)
        with contextlib.suppress(HttpResponseError):  # taken over: that worker decides
            self.client.update_entity({"PartitionKey": pk, "RowKey": rk, "State": "retry",
                                       "Note": reason[:2000]}, mode=UpdateMode.MERGE,
                                      etag=claim.etag,
                                      match_condition=MatchConditions.IfNotModified)

    def state(self, rule_id: str, event_id: str) -> str | None:
        pk, rk = delivery_key(rule_id, event_id)
        try:
            return self.client.get_entity(pk, rk, select=["State"])["State"]
        except ResourceNotFoundError:
            return None
