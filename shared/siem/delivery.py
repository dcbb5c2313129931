"""Push delivery: each output reads the feed from its own position, so a destination that
is down for hours only waits (its events stay in the feed) and never holds back another.

Per output, one state row holds the position, a lease (ETag-guarded, so two deliveries of
the same output never interleave) and the back-off after failures. The position moves only
after the destination took the batch: at least once, with a dedupe key in every event.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.logsafe import clean
from shared.messages import DeliverRequest
from shared.siem.feed import END, Feed, Filters, Position, bucket_of
from shared.siem.outputs import Output
from shared.siem.senders import DeliveryError, Sender, sender_for
from shared.storage import tables
from shared.storage.connection import StorageConnection

log = logging.getLogger("mssp_hub.siem")
PK = "output"
LEASE_SECONDS = 120
QUEUED_SECONDS = 300  # a deliver message not picked up by then is sent again
RUN_SECONDS = 200  # then hand over to a fresh message (the host's timeout is longer)
MAX_BACKOFF = 900
NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # MERGE cannot clear a property; this stands for none


def backoff(failures: int) -> int:
    return min(10 * 2 ** max(failures - 1, 0), MAX_BACKOFF)


@dataclass
class Outcome:
    output: str
    delivered: int = 0
    batches: int = 0
    status: str = "idle"  # idle | delivered | failed | busy | waiting | unknown
    error: str = ""


class Delivery:
    def __init__(self, storage: StorageConnection, feed: Feed, outputs: tuple[Output, ...],
                 senders: Callable[[Output], Sender] = sender_for) -> None:
        self.table = tables.table(storage, tables.SIEM_DELIVERY)
        self.queue = tables.queue(storage, tables.SIEM_DELIVERY_QUEUE)
        self.feed = feed
        self.outputs = {o.name: o for o in outputs}
        self.senders = {o.name: senders(o) for o in outputs}
        self.owner = uuid.uuid4().hex

    # state ------------------------------------------------------------------------------
    def _row(self, name: str) -> Any:
        try:
            return self.table.get_entity(PK, name)
        except ResourceNotFoundError:
            horizon = self.feed.horizon_us()  # a new output starts with what arrives now
            entity = {"PartitionKey": PK, "RowKey": name, "Bucket": bucket_of(horizon),
                      "After": f"{horizon:016d}{END}", "Owner": "", "Failures": 0}
            with contextlib.suppress(ResourceExistsError):
                self.table.create_entity(entity)
            return self.table.get_entity(PK, name)

    def _update(self, row: Any, **changes: Any) -> Any:
        entity = {"PartitionKey": PK, "RowKey": row["RowKey"], **changes}
        result = self.table.update_entity(entity, mode=UpdateMode.MERGE,
                                          etag=row.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
        merged = type(row)({**row, **changes})
        merged._metadata = {**row.metadata, "etag": result["etag"]}
        return merged

    # timer ------------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Queue a delivery for each output that is not busy, queued or backing off."""
        now = datetime.now(UTC)
        queued = []
        for name in self.outputs:
            row = self._row(name)
            if (row.get("Owner") and row.get("LeaseUntil") and row["LeaseUntil"] > now) or \
                    (row.get("RetryAt") and row["RetryAt"] > now) or \
                    (row.get("QueuedAt") and row["QueuedAt"] > now - timedelta(
                        seconds=QUEUED_SECONDS)):
                continue
            try:
                self._update(row, QueuedAt=now)
            except HttpResponseError:
                continue  # changed under us: someone is on it
            self.queue.send_message(DeliverRequest(name).to_message())
            queued.append(name)
        return queued

    # worker -----------------------------------------------------------------------------
    def deliver(self, name: str) -> Outcome:
        outcome = Outcome(name)
        output = self.outputs.get(name)
        if output is None:
            outcome.status = "unknown"  # removed from SIEM_OUTPUTS since it was queued
            return outcome
        row = self._row(name)
        now = datetime.now(UTC)
        if row.get("Owner") and row["Owner"] != self.owner and row.get("LeaseUntil") \
                and row["LeaseUntil"] > now:
            outcome.status = "busy"
            return outcome
        if row.get("RetryAt") and row["RetryAt"] > now:
            outcome.status = "waiting"
            self._update(row, QueuedAt=NEVER)
            return outcome
        try:
            row = self._update(row, Owner=self.owner, QueuedAt=NEVER,
                               LeaseUntil=now + timedelta(seconds=LEASE_SECONDS))
        except HttpResponseError:
            outcome.status = "busy"
            return outcome
        filters = Filters(tenants=tuple(sorted(output.tenants)),
                          severities=output.severities() or ())
        position = Position(row["Bucket"], row["After"])
        deadline = time.monotonic() + RUN_SECONDS
        more = True
        while more and time.monotonic() < deadline:
            page = self.feed.read(position, output.batch_size, filters)
            if page.events:
                try:
                    self.senders[name].send(page.events)
                except DeliveryError as exc:
                    failures = int(row.get("Failures") or 0) + 1
                    outcome.status, outcome.error = "failed", clean(exc)
                    self._update(row, Owner="", Failures=failures, LastError=outcome.error,
                                 LastErrorAt=datetime.now(UTC),
                                 RetryAt=datetime.now(UTC) + timedelta(
                                     seconds=backoff(failures)))
                    log.warning("siem output %s failed (%d in a row): %s", name, failures,
                                outcome.error)
                    return outcome
                outcome.delivered += len(page.events)
                outcome.batches += 1
            position, more = page.position, page.more
            changes: dict[str, Any] = {
                "Bucket": position.bucket, "After": position.after, "Failures": 0,
                "RetryAt": NEVER,
                "LeaseUntil": datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)}
            if page.events:
                changes["LastSuccessAt"] = datetime.now(UTC)
            row = self._update(row, **changes)  # lost the lease: the raise ends this run
        self._update(row, Owner="")
        if more:
            self.queue.send_message(DeliverRequest(name).to_message())
        outcome.status = "delivered" if outcome.delivered else "idle"
        return outcome

    # status -----------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return output_status(self.table, tuple(self.outputs.values()), self.feed.now_us())


def output_status(table: Any, outputs: tuple[Output, ...], now_us: int
                  ) -> list[dict[str, Any]]:
    """Each output's lag and health, for /api/siem/outputs, /api/health and the portal."""
    out = []
    for output in outputs:
        try:
            row = table.get_entity(PK, output.name)
        except ResourceNotFoundError:
            row = {}
        after = str(row.get("After", ""))[:16]
        lag = max(0, round((now_us - int(after)) / 1e6)) if after.isdigit() else None
        out.append({"name": output.name, "type": output.type, "format": output.format,
                    "lag_seconds": lag, "failures": int(row.get("Failures") or 0),
                    "last_error": row.get("LastError") or None,
                    "last_error_at": _iso(row.get("LastErrorAt")),
                    "retry_at": _iso(row.get("RetryAt")),
                    "last_success_at": _iso(row.get("LastSuccessAt"))})
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) and value > NEVER else None
