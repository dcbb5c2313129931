"""At most one email per (rule, alert, alert version), across redeliveries and racing
workers: a row per delivery in NotifyLedger, claimed with an ETag before sending, marked
after.

The row keeps the time of its first claim: a repeat after a crash or a transient failure
is built with the same Date (and the same Message-ID, see notify/render.message_id), so it
is the same message again, which mail clients show once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

CLAIM_SECONDS = 120  # a claim older than this was abandoned by a dead worker
FINAL = ("sent", "refused", "failed", "digested", "kept")  # kept: MAIL_TRANSPORT=none


class Busy(RuntimeError):
    """Another worker is sending this email right now; retry later to confirm it."""


class ClaimLost(RuntimeError):
    """The claim was taken over (it had expired): the taker records the outcome."""


@dataclass(frozen=True)
class Claim:
    etag: str
    first_at: datetime  # the Date of the email, on every attempt


def delivery_key(owner: str, key: str) -> tuple[str, str]:
    """(PartitionKey, RowKey) of an email: the owner (a rule id, or "ops") and a hash of
    its key (an event id, "digest:<batch>", a notice key)."""
    return owner, hashlib.sha256(key.encode()).hexdigest()


def is_fresh(claimed_at: datetime, now: datetime) -> bool:
    return claimed_at > now - timedelta(seconds=CLAIM_SECONDS)


class NotifyLedger:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def claim(self, owner: str, key: str, detail: dict[str, Any],
              now: datetime | None = None) -> Claim | None:
        """A claim to send under, or None if this email was already sent (or given up).
        Raises Busy while another worker's claim is fresh."""
        pk, rk = delivery_key(owner, key)
        now = now or datetime.now(UTC)
        entity = {"PartitionKey": pk, "RowKey": rk, "State": "sending", "ClaimedAt": now,
                  "FirstClaimedAt": now, "EventId": key[:500], **detail}
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
        if row["State"] == "sending" and is_fresh(row["ClaimedAt"], now):
            raise Busy(f"another worker is sending {owner}/{key}")
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

    def finish(self, owner: str, key: str, claim: Claim, state: str, note: str = "",
               refused: list[dict[str, str]] | None = None) -> None:
        """sent (maybe with some recipients refused) | refused (nobody could get it) |
        failed (the email could not be built) | digested | kept (no transport). Final:
        never retried. Raises ClaimLost if the claim was taken over since."""
        pk, rk = delivery_key(owner, key)
        try:
            self.client.update_entity({"PartitionKey": pk, "RowKey": rk, "State": state,
                                       "FinishedAt": datetime.now(UTC), "Note": note[:2000],
                                       "Refused": json.dumps(refused or [])[:30000]},
                                      mode=UpdateMode.MERGE, etag=claim.etag,
                                      match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError as exc:
            raise ClaimLost(f"ledger row {owner}/{key} changed under the claim") from exc

    def release(self, owner: str, key: str, claim: Claim, reason: str) -> None:
        """A transient failure: a retry may send at once (keeping the first claim's Date)."""
        pk, rk = delivery_key(owner, key)
        with contextlib.suppress(HttpResponseError):  # taken over: that worker decides
            self.client.update_entity({"PartitionKey": pk, "RowKey": rk, "State": "retry",
                                       "Note": reason[:2000]}, mode=UpdateMode.MERGE,
                                      etag=claim.etag,
                                      match_condition=MatchConditions.IfNotModified)

    def state(self, owner: str, key: str) -> str | None:
        pk, rk = delivery_key(owner, key)
        try:
            return self.client.get_entity(pk, rk, select=["State"])["State"]
        except ResourceNotFoundError:
            return None
