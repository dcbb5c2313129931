"""Events held for a rule's next digest, in NotifyDigest.

Rows of partition <rule id>: one per held event (RowKey: its delivery key), `~state` (when
the last digest went) and `~cap:<YYYYMMDDHH>` (emails sent this hour, ETag-counted). A
batch id is written on the held rows (in transactions, under their ETags) before the
digest is sent, so a worker that dies mid-way resends the same batch, not a different one.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

STATE = "~state"


@dataclass
class Held:
    """One held event: `event` is the brief the digest shows, `batch` the digest it was
    assigned to ("" while free)."""

    key: str
    event: dict[str, Any]
    recipients: list[str]
    batch: str = ""
    etag: str = ""


def cap_key(now: datetime) -> str:
    return f"~cap:{now:%Y%m%d%H}"


class DigestRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def hold(self, rule_id: str, key: str, event: dict[str, Any], recipients: list[str]
             ) -> None:
        """Hold an event (again: the same row) for the rule's next digest. `event` must be
        small: it is one string property (under 32K characters)."""
        self.client.upsert_entity({
            "PartitionKey": rule_id, "RowKey": key, "Batch": "", "Event": json.dumps(event),
            "Recipients": json.dumps(recipients), "HeldAt": datetime.now(UTC)})

    def held(self, rule_id: str) -> list[Held]:
        return [Held(r["RowKey"], json.loads(r["Event"]), json.loads(r["Recipients"]),
                     r["Batch"], r.metadata["etag"])
                for r in self.client.query_entities("PartitionKey eq @pk",
                                                    parameters={"pk": rule_id})
                if not r["RowKey"].startswith("~")]

    def last_sent(self, rule_id: str) -> datetime | None:
        try:
            return self.client.get_entity(rule_id, STATE)["LastSentAt"]
        except ResourceNotFoundError:
            return None

    def assign(self, rule_id: str, rows: list[Held], batch: str) -> None:
        """Write `batch` on rows read by `held`; RuntimeError if any changed since."""
        for start in range(0, len(rows), 100):
            chunk = rows[start:start + 100]
            try:
                self.client.submit_transaction([
                    ("update", {"PartitionKey": rule_id, "RowKey": r.key, "Batch": batch},
                     {"mode": UpdateMode.MERGE, "etag": r.etag,
                      "match_condition": MatchConditions.IfNotModified}) for r in chunk])
            except HttpResponseError:
                raise RuntimeError("digest rows changed under us; retry") from None
            for r in chunk:
                r.batch = batch

    def take_slot(self, rule_id: str, cap: int, now: datetime) -> bool:
        """One of the rule's `cap` emails in the hour of `now`, if any is left."""
        key = cap_key(now)
        for _ in range(10):
            try:
                row = self.client.get_entity(rule_id, key)
            except ResourceNotFoundError:
                try:
                    self.client.create_entity({"PartitionKey": rule_id, "RowKey": key,
                                               "Count": 1})
                    return True
                except HttpResponseError:
                    continue
            if row["Count"] >= cap:
                return False
            try:
                self.client.update_entity({"PartitionKey": rule_id, "RowKey": key,
                                           "Count": row["Count"] + 1}, mode=UpdateMode.MERGE,
                                          etag=row.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
                return True
            except HttpResponseError:
                continue
        return False

    def drain(self, rule_id: str, rows: list[Held]) -> None:
        """The rows went out in a digest: remove them (those already gone are skipped) and
        note when, which starts the rule's next window."""
        keys = [{"PartitionKey": rule_id, "RowKey": r.key} for r in rows]
        for start in range(0, len(keys), 100):
            chunk = keys[start:start + 100]
            try:
                self.client.submit_transaction([("delete", k) for k in chunk])
            except HttpResponseError:  # some were removed already: one by one
                for k in chunk:
                    with contextlib.suppress(ResourceNotFoundError):
                        self.client.delete_entity(k["PartitionKey"], k["RowKey"])
        self.client.upsert_entity({"PartitionKey": rule_id, "RowKey": STATE,
                                   "LastSentAt": datetime.now(UTC)})
