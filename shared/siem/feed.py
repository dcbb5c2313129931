"""The alert feed: every new or changed alert version once, in a stable order, for the
pull API and for each push output's own position.

Entries are keyed by the time they were written (microseconds) in hourly partitions.
Readers stop `settle` seconds short of now, and a writer whose write took longer than
half of that rewrites the entry with a fresh key, so an entry never appears behind a
reader's position: no gaps while alerts arrive. A ledger row per event id makes a
redelivered event a no-op, so each version is one entry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from shared import codec
from shared.messages import AlertEvent
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.keys import encode_key

HOUR = "%Y%m%d%H"
MAX_BUCKETS_PER_READ = 240  # ten days of empty hours per call at most
END = "~"  # sorts after every key of a bucket ("digits|...")


@dataclass(frozen=True)
class Position:
    """Just after the last entry a reader has seen."""

    bucket: str
    after: str = ""


@dataclass(frozen=True)
class Filters:
    tenants: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    since: str = ""  # normalized lastUpdateTime bounds
    until: str = ""

    def odata(self) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        for prop, values, tag in (("Tenant", self.tenants, "t"), ("Severity", self.severities, "s"),
                                  ("Status", self.statuses, "x")):
            if values:
                names = [f"{tag}{n}" for n in range(len(values))]
                params.update(zip(names, values, strict=True))
                # spaces around the brackets: the SDK finds @names by splitting on spaces
                clauses.append("( " + " or ".join(f"{prop} eq @{n}" for n in names) + " )")
        if self.since:
            clauses.append("LastUpdateTime ge @since")
            params["since"] = self.since
        if self.until:
            clauses.append("LastUpdateTime le @until")
            params["until"] = self.until
        return " and ".join(clauses), params


@dataclass
class Page:
    events: list[dict[str, Any]] = field(default_factory=list)
    position: Position = Position("")
    more: bool = False


def bucket_of(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime(HOUR)


def _buckets(first: str, last: str) -> Iterator[str]:
    when = datetime.strptime(first, HOUR)
    end = datetime.strptime(last, HOUR)
    while when <= end:
        yield when.strftime(HOUR)
        when += timedelta(hours=1)


def _pack(data: Any) -> bytes:
    return codec.pack(data)


class Feed:
    def __init__(self, storage: StorageConnection, settle_seconds: int, retention_days: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.table = tables.table(storage, tables.SIEM_FEED)
        self.alerts = tables.table(storage, tables.ALERTS)
        self.settle_us = settle_seconds * 1_000_000
        self.retention_days = retention_days
        self.clock = clock
        self._pruned_at = -1e9

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def horizon_us(self) -> int:
        """Readers see entries keyed up to here; later ones may still be in flight."""
        return self.now_us() - self.settle_us

    def start(self, since: datetime | None = None) -> Position:
        """Where a new reader starts: the hour before `since`, or the retention start."""
        floor = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=self.retention_days)
        when = max(since - timedelta(hours=1), floor) if since else floor
        return Position(when.strftime(HOUR))

    # writing -----------------------------------------------------------------------------
    def append(self, event: AlertEvent) -> bool:
        """Add the event once; False when it was already in the feed (a redelivery).

        Three storage calls in the usual case: the stored alert, the ledger row (created:
        it fails for a redelivery), the entry.
        """
        ledger_pk = "L" + event.version[:10].replace("-", "")
        ledger_rk = encode_key(event.event_id)
        raw = self._raw(event)  # read before stamping: its time is not in the window
        for _ in range(5):
            stamp, stale = self.now_us(), None
            try:
                self.table.create_entity({"PartitionKey": ledger_pk, "RowKey": ledger_rk,
                                          "Stamp": str(stamp)})
            except ResourceExistsError:
                ledger = self.table.get_entity(ledger_pk, ledger_rk)
                earlier = int(ledger["Stamp"])
                if self._exists(event, earlier):
                    return False
                if stamp - earlier <= self.settle_us // 2:
                    stamp = earlier  # another delivery is writing it now: same key
                else:
                    stale = earlier  # an attempt that died: key it anew
                    try:
                        self._restamp(ledger_pk, ledger_rk, stamp, ledger.metadata["etag"])
                    except HttpResponseError as exc:
                        if exc.status_code == 412:
                            continue
                        raise
            entity = self._entity(event, stamp, raw)
            self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            if self.now_us() - stamp > self.settle_us // 2:  # too slow: a reader may be past
                stale, stamp = stamp, self.now_us()
                self.table.upsert_entity({**entity, "PartitionKey": bucket_of(stamp),
                                          "RowKey": self._key(event, stamp)},
                                         mode=UpdateMode.REPLACE)
                self.table.upsert_entity({"PartitionKey": ledger_pk, "RowKey": ledger_rk,
                                          "Stamp": str(stamp)}, mode=UpdateMode.MERGE)
            if stale is not None and stale != stamp:
                with contextlib.suppress(ResourceNotFoundError):
                    self.table.delete_entity(bucket_of(stale), self._key(event, stale))
            return True
        raise RuntimeError(f"feed ledger for {event.event_id} kept changing")

    def _exists(self, event: AlertEvent, stamp: int) -> bool:
        try:
            self.table.get_entity(bucket_of(stamp), self._key(event, stamp), select=["RowKey"])
            return True
        except ResourceNotFoundError:
            return False

    def _restamp(self, pk: str, rk: str, stamp: int, etag: str) -> None:
        self.table.update_entity({"PartitionKey": pk, "RowKey": rk, "Stamp": str(stamp)},
                                 mode=UpdateMode.MERGE, etag=etag,
                                 match_condition=MatchConditions.IfNotModified)

    @staticmethod
    def _key(event: AlertEvent, stamp: int) -> str:
        return f"{stamp:016d}|{encode_key(event.event_id)}"

    def _entity(self, event: AlertEvent, stamp: int,
                raw: Mapping[str, bytes] | None = None) -> dict[str, Any]:
        """The entry: filterable columns, the event, and the stored alert (else its summary)."""
        alert = event.alert
        entity: dict[str, Any] = {
            "PartitionKey": bucket_of(stamp), "RowKey": self._key(event, stamp),
            "Tenant": event.tenant_id, "LastUpdateTime": event.version,
            "Severity": str(alert.get("severity") or ""), "Status": str(alert.get("status") or ""),
            "Event": _pack({k: v for k, v in event.dump().items() if k != "alert"})}
        if raw:
            entity.update(raw)
        else:
            entity["Summary"] = _pack(alert)
        return entity

    def _raw(self, event: AlertEvent) -> dict[str, Any]:
        """The stored Defender alert of this version, copied compressed as it is in Alerts."""
        try:
            row = self.alerts.get_entity(event.tenant_id, encode_key(event.alert_id))
        except ResourceNotFoundError:
            return {}
        if row.get("Version") != event.version or row.get("BodyRows", 1) != 1:
            return {}  # superseded already, or too large to copy: the summary stands in
        return {k: bytes(v) for k, v in row.items() if k.startswith("Body") and k[4:].isdigit()}

    # reading -----------------------------------------------------------------------------
    def read(self, position: Position, limit: int, filters: Filters = Filters()) -> Page:
        """Up to `limit` events after `position`, and where to continue."""
        horizon = self.horizon_us()
        last = bucket_of(horizon)
        extra, params = filters.odata()
        page = Page(position=position)
        end = Position(last, f"{horizon:016d}{END}")
        if (position.bucket, position.after) >= (end.bucket, end.after):
            return page  # already at the horizon (or the clock went back)
        for n, bucket in enumerate(_buckets(position.bucket, last)):
            if n == MAX_BUCKETS_PER_READ:
                page.more = True
                return page
            query = "PartitionKey eq @pk and RowKey gt @lo"
            args = {**params, "pk": bucket,
                    "lo": position.after if bucket == position.bucket else ""}
            if bucket == last:
                query += " and RowKey lt @hi"
                args["hi"] = f"{horizon + 1:016d}"
            if extra:
                query += " and " + extra
            want = limit - len(page.events)
            for entity in self.table.query_entities(query, parameters=args,
                                                    results_per_page=min(want, 1000)):
                page.events.append(decode(entity))
                if len(page.events) == limit:
                    page.position, page.more = Position(bucket, entity["RowKey"]), True
                    return page
            page.position = Position(bucket, END)
        page.position = end
        return page

    # retention ---------------------------------------------------------------------------
    def prune_if_due(self, every_seconds: int = 600) -> int:
        """Prune at most every few minutes per process (the timer fires far more often)."""
        now = time.monotonic()
        if now - self._pruned_at < every_seconds:
            return 0
        self._pruned_at = now
        return self.prune()

    def prune(self) -> int:
        """Delete entries and ledger rows older than the retention; returns rows deleted."""
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days + 1)
        try:
            through = str(self.table.get_entity("meta", "prune")["Through"])
        except ResourceNotFoundError:
            through = (cutoff - timedelta(days=2)).strftime(HOUR)
        last = cutoff.strftime(HOUR)
        deleted = 0
        for bucket in _buckets(through, last):
            for pk in (bucket, "L" + bucket[:8]) if bucket.endswith("23") else (bucket,):
                deleted += self._delete_partition(pk)
        self.table.upsert_entity({"PartitionKey": "meta", "RowKey": "prune", "Through": last})
        return deleted

    def _delete_partition(self, pk: str) -> int:
        keys = [e["RowKey"] for e in self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"])]
        for i in range(0, len(keys), 100):
            self.table.submit_transaction(
                [("delete", {"PartitionKey": pk, "RowKey": k}) for k in keys[i:i + 100]])
        return len(keys)


def decode(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A feed entry as an event: the stored Defender alert when it was copied, else the summary."""
    event = codec.unpack(bytes(entity["Event"]))
    chunks = sorted(k for k in entity if k.startswith("Body") and k[4:].isdigit())
    if chunks:
        event["alert"] = codec.unpack(b"".join(bytes(entity[k]) for k in chunks))
        event["alert_complete"] = True
    else:
        event["alert"] = codec.unpack(bytes(entity["Summary"]))
        event["alert_complete"] = False
    micros = int(str(entity["RowKey"]).split("|", 1)[0])
    event["feed_time"] = datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace(
        "+00:00", "Z")
    return event

