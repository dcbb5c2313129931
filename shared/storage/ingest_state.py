"""Per-tenant ingest state in one Table partition, so it changes in single transactions.

Rows in partition <tenant id> of IngestState:
  cursor              watermark + skip: where the next fetch continues, and the versions
                      committed within the fetch overlap before it (`Recent`), so an idle
                      run that re-reads them needs no version index
  lease               which worker is fetching this tenant, until when
  relay-lease         which relay is sending this tenant's outbox, until when
  budget              Defender calls per minute over the last hour (our own rate limit)
  idx:<day>:<n>       the version index: alert id -> [version, status, classification,
                      determination, assignedTo, severity] for alerts created that day
                      (compressed; entries written before severity was kept have 5)
  out:<time>:<uuid>   outbox: the events of one committed chunk, until they are relayed
  tally               the tenant's alert counts (shared/storage/tenant_summaries.py), changed
                      by the relay in the same transaction as an outbox row's progress
A chunk commits its index changes, its outbox row and the cursor in one transaction, so
either all of them happen or none does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import codec
from shared.model import Cursor
from shared.storage import batch, limits
from shared.storage.errors import StateChanged
from shared.storage.tenant_summaries import Counts

CURSOR, LEASE, BUDGET = "cursor", "lease", "budget"
RELAY_LEASE = "relay-lease"  # one relay per outbox at a time
TALLY = "tally"  # the tenant's alert counts, kept by the relay
CHUNK = 60_000
SHARD_LIMIT = 600_000  # compressed bytes per index shard before a new one is started
OUTBOX_ROW_BYTES = 800_000  # compressed events per outbox row (of 1 MiB per entity)
RECENT_BYTES = 60_000  # the cursor row's `Recent`, packed (of 64 KiB a value); more: not kept
IndexEntry = list[Any]  # [version, status, classification, determination, assignedTo]


# the budget as read -> the budget with the first call counted, or None (not counted)
Charge = Callable[[dict[int, int]], dict[int, int] | None]


class ConflictError(RuntimeError):
    """Another worker changed the state first; this worker's chunk did not commit."""


def _chunked(data: bytes) -> dict[str, bytes]:
    return {f"Data{i // CHUNK:02d}": data[i:i + CHUNK] for i in range(0, len(data), CHUNK)} \
        or {"Data00": b""}


def _pack(value: Any) -> dict[str, bytes]:
    return _chunked(codec.pack(value))


def _outbox_parts(events: list[bytes]) -> list[tuple[list[bytes], bytes]]:
    """The events (serialized) in order, split so that each part's packed list fits one
    outbox row. Packed as `codec.pack(list of the events)` would pack them."""
    done: list[tuple[list[bytes], bytes]] = []
    todo = [events]
    while todo:
        part = todo.pop()
        data = codec.compress(b"[" + b",".join(part) + b"]")
        if len(data) <= OUTBOX_ROW_BYTES or len(part) == 1:
            done.append((part, data))
        else:
            todo += [part[len(part) // 2:], part[:len(part) // 2]]
    return done


def _op_wire(op: Any) -> int:
    return limits.wire_size(op[1])


def _fits(ops: list[Any]) -> bool:
    return len(ops) <= limits.MAX_TRANSACTION_OPS and sum(
        _op_wire(op) for op in ops) <= limits.MAX_TRANSACTION_WIRE


def _unpack(entity: Any) -> Any:
    data = b"".join(bytes(entity[k]) for k in sorted(entity) if k.startswith("Data"))
    return codec.unpack(data) if data else None


@dataclass
class Shard:
    row_key: str
    entries: dict[str, IndexEntry]
    etag: str | None = None  # set by the load, then by each commit of the shard
    dirty: bool = False
    added: set[str] = field(default_factory=set)
    pending: int = 0  # commits holding it that the worker has not seen finish

    @property
    def new(self) -> bool:
        """Never written: no ETag, and in no commit (a failed one ends the run)."""
        return self.etag is None and not self.pending

    @property
    def day(self) -> str:
        return self.row_key[4:].rsplit(":", 1)[0]  # idx:<day>:<number>

    @property
    def number(self) -> int:
        return int(self.row_key.rsplit(":", 1)[1])


Snapshot = list[tuple[Shard, dict[str, bytes]]]  # changed shards, packed as of one chunk


@dataclass
class Index:
    """The version index shards of the days one run has loaded."""

    shards: dict[str, Shard] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # alert id -> shard row key
    days: set[str] = field(default_factory=set)  # loaded (a day without shards included)
    latest: dict[str, Shard] = field(default_factory=dict)  # day -> its last shard

    def add(self, shard: Shard) -> Shard:
        """A shard loaded or started; a day's new ids go to its highest-numbered one."""
        self.shards[shard.row_key] = shard
        last = self.latest.get(shard.day)
        if last is None or shard.number > last.number:
            self.latest[shard.day] = shard
        return shard

    def get(self, alert_id: str) -> IndexEntry | None:
        key = self.where.get(alert_id)
        return self.shards[key].entries.get(alert_id) if key else None

    def put(self, alert_id: str, day: str, entry: IndexEntry) -> Shard:
        key = self.where.get(alert_id)
        if key is None:
            last = self.latest.get(day) or self.add(Shard(f"idx:{day}:00", {}))
            key = self.where[alert_id] = last.row_key
        shard = self.shards[key]
        if alert_id not in shard.entries:
            shard.added.add(alert_id)
        shard.entries[alert_id] = entry
        shard.dirty = True
        return shard

    def rebalance(self) -> dict[str, dict[str, bytes]]:
        """Pack dirty shards; ids new to a full shard move on to the day's next shard."""
        packed: dict[str, dict[str, bytes]] = {}
        pending = [s for s in self.shards.values() if s.dirty]
        while pending:
            shard = pending.pop()
            data = _pack(shard.entries)
            if sum(len(v) for v in data.values()) <= SHARD_LIMIT or not shard.added:
                packed[shard.row_key] = data
                continue
            moving = sorted(shard.added)[len(shard.added) // 2 if shard.new else 0:]
            spill_key = f"idx:{shard.day}:{shard.number + 1:02d}"
            spill = self.shards.get(spill_key) or self.add(Shard(spill_key, {}))
            for alert_id in moving:
                spill.entries[alert_id] = shard.entries.pop(alert_id)
                shard.added.discard(alert_id)
                spill.added.add(alert_id)
                self.where[alert_id] = spill_key
            spill.dirty = True
            pending.extend([shard, spill] if spill not in pending else [shard])
        return packed

    def snapshot(self) -> Snapshot:
        """The changed shards packed as they are now, for a commit; the index then
        counts them as written, and goes on changing without touching the snapshot."""
        taken = [(self.shards[key], data) for key, data in self.rebalance().items()]
        for shard, _ in taken:
            shard.dirty = False
            shard.pending += 1  # its commit's end is counted by ChunkCommits, on this thread
            shard.added.clear()
        return taken

    def evict(self, keep: set[str]) -> None:
        """Forget the days outside `keep` whose shards are all unchanged since their last
        finished commit, so a long run holds the index of the days it is working on,
        not of every day it met; a day forgotten is read again if it comes back."""
        by_day: dict[str, list[Shard]] = {}
        for shard in self.shards.values():
            by_day.setdefault(shard.day, []).append(shard)
        for day in self.days - keep:
            shards = by_day.get(day, [])
            if any(shard.dirty or shard.pending for shard in shards):
                continue
            for shard in shards:
                del self.shards[shard.row_key]
                for alert_id in shard.entries:
                    self.where.pop(alert_id, None)
            self.latest.pop(day, None)
            self.days.discard(day)


class IngestStates:
    """The IngestState table: each tenant's state is its own partition."""

    def __init__(self, client: TableClient) -> None:
        self.client = client

    def of(self, tenant_id: str) -> IngestState:
        return IngestState(self.client, tenant_id)


@dataclass
class Tally:
    """The tally row: the counts, the hashes of the events last counted (so an event in
    the outbox twice counts once), the `seq` last copied to the summaries, its ETag
    (None: no row yet)."""

    counts: Counts = field(default_factory=Counts)
    seen: bytes = b""
    copied: int = 0
    etag: str | None = None


@dataclass
class Opening:
    """What a run starts from, read in one query: whether it holds the lease (else until
    when another does), the cursor, the call budget and the outbox rows left over."""

    held: bool
    until: datetime | None
    cursor: Cursor | None
    cursor_etag: str | None
    minutes: dict[int, int]
    outbox: list[str]
    lease_etag: str | None = None
    # alert id -> index entry of every alert committed within the overlap before the cursor
    # (None: not known, the version index says)
    recent: dict[str, IndexEntry] | None = None
    charged: bool = False  # the budget saved with the lease counts the run's first call


def _recent(data: bytes | None) -> dict[str, IndexEntry] | None:
    return codec.unpack(bytes(data)) if data else None


def _recent_packed(recent: dict[str, IndexEntry] | None) -> bytes:
    """`Recent` as stored (compressed): empty (not known) when there is none or it is too
    big to keep (~1,000 alerts updated within the overlap)."""
    if recent is None:
        return b""
    data = codec.pack(recent)
    return data if len(data) <= RECENT_BYTES else b""


# a graph cursor's chain (model.Cursor), as cursor row properties; an mde cursor has none
_CHAIN = {"Source": "source", "Link": "link", "High": "high", "Started": "started"}


def cursor_properties(cursor: Cursor) -> dict[str, Any]:
    """The cursor row's properties for `cursor` (the chain's only where set)."""
    props: dict[str, Any] = {"Watermark": cursor.watermark, "Skip": cursor.skip}
    for prop, name in _CHAIN.items():
        if getattr(cursor, name):
            props[prop] = getattr(cursor, name)
    return props


def cursor_of(row: Any) -> Cursor:
    """The cursor a cursor row holds."""
    return Cursor(row["Watermark"], int(row["Skip"]),
                  **{name: row.get(prop) or "" for prop, name in _CHAIN.items()})


_OPENING = ("PartitionKey eq @pk and (RowKey eq 'cursor' or RowKey eq 'lease' or "
            "RowKey eq 'budget' or (RowKey ge 'out:' and RowKey lt 'out;'))")


class IngestState:
    def __init__(self, client: TableClient, tenant_id: str) -> None:
        self.client, self.tenant_id = client, tenant_id

    # a run's start and end ----------------------------------------------------------------
    def open(self, owner: str, seconds: int, charge: Charge | None = None) -> Opening:
        """Lease, cursor, budget and outbox rows in one query, then the lease taken (one
        write): what `acquire_lease`, `cursor`, `calls` and `outbox_rows` would give, in
        two requests instead of five.

        `charge(minutes read)` may return the budget with the run's first call counted
        ahead: it is saved in the same transaction as the lease, so an idle run (one call)
        has nothing left to write at its end."""
        rows: dict[str, Any] = {}
        outbox: list[str] = []
        for row in self.client.query_entities(
                _OPENING, parameters={"pk": self.tenant_id},
                select=["RowKey", "Watermark", "Skip", "Owner", "Until", "Minutes",
                        "Recent", *_CHAIN]):
            if row["RowKey"].startswith("out:"):
                outbox.append(row["RowKey"])
            else:
                rows[row["RowKey"]] = row
        cursor_row, budget_row = rows.get(CURSOR), rows.get(BUDGET)
        opening = Opening(
            False, None,
            cursor_of(cursor_row) if cursor_row else None,
            cursor_row.metadata["etag"] if cursor_row else None,
            {int(k): v for k, v in json.loads(budget_row["Minutes"]).items()}
            if budget_row else {}, outbox,
            recent=_recent(cursor_row.get("Recent")) if cursor_row else None)
        charged = charge(dict(opening.minutes)) if charge else None
        opening.held, opening.until, opening.lease_etag = self._take(
            owner, seconds, rows.get(LEASE), charged)
        if opening.held and charged is not None:
            opening.minutes, opening.charged = charged, True
        return opening

    def extend(self, owner: str, seconds: int, lease_etag: str) -> str | None:
        """The lease held `seconds` from now; its new etag, or None when it is no longer
        this holder's (it expired and another worker took it)."""
        return self._renew(LEASE, owner, seconds, lease_etag)

    def close(self, owner: str, lease_etag: str | None, minutes: dict[int, int] | None
              ) -> None:
        """The lease released and (when given) the budget saved, in one transaction; a
        lease another worker took over meanwhile is left to it."""
        budget = {"PartitionKey": self.tenant_id, "RowKey": BUDGET,
                  "Minutes": json.dumps(minutes)} if minutes is not None else None
        release = ("delete", {"PartitionKey": self.tenant_id, "RowKey": LEASE},
                   {"etag": lease_etag, "match_condition": MatchConditions.IfNotModified})
        ops: list[Any] = [release] if lease_etag else []
        if budget is not None:
            ops.append(("upsert", budget, {"mode": UpdateMode.REPLACE}))
        if not ops:
            return
        try:
            batch.submit_transaction(self.client, ops)
        except Exception:  # the lease is someone else's now (theirs), or storage failed:
            if budget is not None:  # the lease expires; the calls are counted still
                self.save_calls(minutes or {})

    def _get(self, row: str) -> Any | None:
        try:
            return self.client.get_entity(self.tenant_id, row)
        except ResourceNotFoundError:
            return None

    # cursor -----------------------------------------------------------------------------
    def cursor(self) -> tuple[Cursor | None, str | None]:
        row = self._get(CURSOR)
        if row is None:
            return None, None
        return cursor_of(row), row.metadata["etag"]

    # lease ------------------------------------------------------------------------------
    def acquire_lease(self, owner: str, seconds: int) -> tuple[bool, datetime | None]:
        """(True, None) when this owner holds the lease now; (False, until) if another does."""
        held, until, _ = self._take(owner, seconds, self._get(LEASE))
        return held, until

    def _take(self, owner: str, seconds: int, row: Any | None,
              minutes: dict[int, int] | None = None
              ) -> tuple[bool, datetime | None, str | None]:
        """Take the lease as `row` (read before) shows it: (held, until, its etag); with
        `minutes`, the budget saved in the same transaction."""
        now = datetime.now(UTC)
        entity = {"PartitionKey": self.tenant_id, "RowKey": LEASE, "Owner": owner,
                  "Until": now + timedelta(seconds=seconds)}
        if row is not None and row["Owner"] != owner and row["Until"] > now:
            return False, row["Until"], None
        if row is None:
            take: Any = ("create", entity)
        else:
            take = ("update", entity, {"mode": UpdateMode.REPLACE, "etag": row.metadata["etag"],
                                       "match_condition": MatchConditions.IfNotModified})
        ops = [take]
        if minutes is not None:
            ops.append(("upsert", {"PartitionKey": self.tenant_id, "RowKey": BUDGET,
                                   "Minutes": json.dumps(minutes)},
                        {"mode": UpdateMode.REPLACE}))
        try:
            result = batch.submit_transaction(self.client, ops)[0]
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):  # another worker was first
                return False, now + timedelta(seconds=5), None
            raise
        return True, None, result.get("etag")

    def borrow_lease(self, owner: str, seconds: int, short: int) -> str | None:
        """The lease for a write outside a fetch (an own change stored at once): its etag,
        or None when a fetch holds it for writing. A lease ending within `short` seconds
        belongs to a run that has written nothing (it extends its lease before its first
        write) or to an idle run letting it lapse: it is taken over, and such a run stops
        at its first write (`RunHold.secure`: the lease's ETag moved)."""
        now = datetime.now(UTC)
        row = self._get(LEASE)
        if row is not None and row["Owner"] != owner \
                and row["Until"] > now + timedelta(seconds=short):
            return None
        entity = {"PartitionKey": self.tenant_id, "RowKey": LEASE, "Owner": owner,
                  "Until": now + timedelta(seconds=seconds)}
        try:
            if row is None:
                return self.client.create_entity(entity)["etag"]
            return self.client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified)["etag"]
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if exc.status_code not in (404, 412):
                raise
            return None

    def release_lease(self, owner: str) -> None:
        row = self._get(LEASE)
        if row is not None and row["Owner"] == owner:
            try:
                self.client.delete_entity(self.tenant_id, LEASE, etag=row.metadata["etag"],
                                          match_condition=MatchConditions.IfNotModified)
            except Exception:  # someone else took it over; theirs now
                return

    # relay lease ------------------------------------------------------------------------
    def take_relay_lease(self, owner: str, seconds: int) -> tuple[str | None, datetime | None]:
        """(etag, None) when `owner` now holds the outbox's relay lease for `seconds`;
        (None, until) when another relay holds a live one. ETag-guarded: of two relays
        taking it at once, one wins."""
        now = datetime.now(UTC)
        row = self._get(RELAY_LEASE)
        if row is not None and row["Owner"] != owner and row["Until"] > now:
            return None, row["Until"]
        entity = {"PartitionKey": self.tenant_id, "RowKey": RELAY_LEASE, "Owner": owner,
                  "Until": now + timedelta(seconds=seconds)}
        try:
            if row is None:
                return self.client.create_entity(entity)["etag"], None
            return self.client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified)["etag"], None
        except ResourceExistsError:
            return None, now + timedelta(seconds=seconds)
        except HttpResponseError as exc:
            if exc.status_code not in (404, 412):
                raise
            return None, now + timedelta(seconds=seconds)

    def renew_relay_lease(self, owner: str, seconds: int, etag: str) -> str | None:
        """The lease's new etag, extended by `seconds` from now; None when it is no longer
        this holder's (taken over after it expired, or released)."""
        return self._renew(RELAY_LEASE, owner, seconds, etag)

    def _renew(self, row: str, owner: str, seconds: int, etag: str) -> str | None:
        """A lease row held `seconds` from now, if it is still as `etag` says: its new
        etag, else None."""
        entity = {"PartitionKey": self.tenant_id, "RowKey": row, "Owner": owner,
                  "Until": datetime.now(UTC) + timedelta(seconds=seconds)}
        try:
            return self.client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag,
                match_condition=MatchConditions.IfNotModified)["etag"]
        except HttpResponseError as exc:
            if exc.status_code not in (404, 412):
                raise
            return None

    def release_relay_lease(self, etag: str) -> None:
        """Give the lease up, if it is still the one this holder took (`etag`)."""
        try:
            self.client.delete_entity(self.tenant_id, RELAY_LEASE, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code != 412:  # gone, or another's now: nothing of ours to free
                raise

    # budget -----------------------------------------------------------------------------
    def calls(self) -> tuple[dict[int, int], str | None]:
        row = self._get(BUDGET)
        if row is None:
            return {}, None
        return {int(k): v for k, v in json.loads(row["Minutes"]).items()}, row.metadata["etag"]

    def save_calls(self, minutes: dict[int, int]) -> None:
        self.client.upsert_entity({"PartitionKey": self.tenant_id, "RowKey": BUDGET,
                                   "Minutes": json.dumps(minutes)}, mode=UpdateMode.REPLACE)

    # version index ----------------------------------------------------------------------
    def load_index(self, days: Iterable[str], into: Index | None = None) -> Index:
        """Every shard of the given creation days (one range query per run of days),
        added to `into` (without the days it has loaded already)."""
        index = into if into is not None else Index()
        wanted = sorted(set(days) - index.days)
        index.days.update(wanted)
        if not wanted:
            return index
        ranges: list[tuple[str, str]] = []
        for day in wanted:  # merge consecutive days into one range query
            if ranges and _next_day(ranges[-1][1]) == day:
                ranges[-1] = (ranges[-1][0], day)
            else:
                ranges.append((day, day))
        if len(ranges) > 8:  # scattered: one query over the whole span is cheaper
            ranges = [(wanted[0], wanted[-1])]
        for low, high in ranges:
            query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
            for row in self.client.query_entities(
                    query, parameters={"pk": self.tenant_id, "lo": f"idx:{low}:",
                                       "hi": f"idx:{high};"}):
                entries = _unpack(row) or {}
                index.add(Shard(row["RowKey"], entries, row.metadata["etag"]))
                for alert_id in entries:
                    index.where[alert_id] = row["RowKey"]
        return index

    # commit -----------------------------------------------------------------------------
    def commit(self, shards: Snapshot, events: list[bytes], cursor: Cursor,
               cursor_etag: str | None, stamp: str,
               recent: dict[str, IndexEntry] | None = None) -> tuple[list[str], str | None]:
        """Index shards (`Index.snapshot()`), outbox (`events`: serialized messages) and
        cursor (with `recent`: see `Opening.recent`); returns (outbox rows, new cursor
        etag).

        Normally one transaction: all of it or nothing. When the changed index shards and
        the events exceed what Azure takes in one (100 operations, 4 MiB), the outbox rows
        go first, then the shards, the cursor last (each shard and the cursor guarded by
        its ETag). A worker dying in between leaves the cursor where it was, and the rerun
        emits again only events already in the outbox, under the same event ids, which
        every consumer deduplicates; nothing is lost.

        Raises ConflictError when another worker moved the state first.
        """
        shard_ops = [self._shard_op(shard, data) for shard, data in shards]
        outbox_ops = []
        for part, data in _outbox_parts(events) if events else []:
            outbox_ops.append(("create", {
                "PartitionKey": self.tenant_id, "RowKey": f"out:{stamp}:{uuid.uuid4().hex}",
                "Count": len(part), "Sent": 0, **_chunked(data)}))
        cursor_row = {"PartitionKey": self.tenant_id, "RowKey": CURSOR,
                      **cursor_properties(cursor), "UpdatedAt": datetime.now(UTC),
                      "Recent": _recent_packed(recent)}
        if cursor_etag:
            cursor_op: Any = ("update", cursor_row, {
                "mode": UpdateMode.REPLACE, "etag": cursor_etag,
                "match_condition": MatchConditions.IfNotModified})
        else:
            cursor_op = ("create", cursor_row)
        ops = [*shard_ops, *outbox_ops, cursor_op]
        if _fits(ops):
            steps = [ops]
        else:
            steps = [*limits.packed(([op] for op in outbox_ops), _op_wire),
                     *limits.packed(([op] for op in [*shard_ops, cursor_op]), _op_wire)]
        etags: dict[str, str | None] = {}
        for step in steps:
            try:
                results = batch.submit_transaction(self.client, step)
            except TableTransactionError as exc:
                raise ConflictError(f"ingest state changed under us: {exc.error_code}"
                                    ) from exc
            for op, result in zip(step, results, strict=True):
                etags[op[1]["RowKey"]] = result.get("etag")
        for shard, _ in shards:
            shard.etag = etags[shard.row_key]  # for the next commit, on the same thread
        return [op[1]["RowKey"] for op in outbox_ops], etags[CURSOR]

    def commit_alone(self, shards: Snapshot, events: list[bytes], stamp: str) -> list[str]:
        """Index shards and an outbox row in one transaction, the cursor left where it is:
        an alert stored outside a fetch (`shared/ingest/own_changes.py`). A fetch that
        loaded a shard before this commit fails its own commit on the shard's ETag and
        reruns. Returns the outbox rows; ConflictError when a shard moved first."""
        ops = [self._shard_op(shard, data) for shard, data in shards]
        for part, data in _outbox_parts(events) if events else []:
            ops.append(("create", {
                "PartitionKey": self.tenant_id, "RowKey": f"out:{stamp}:{uuid.uuid4().hex}",
                "Count": len(part), "Sent": 0, **_chunked(data)}))
        if not _fits(ops):
            raise ValueError("an own change's commit must fit one transaction")
        try:
            results = batch.submit_transaction(self.client, ops)
        except TableTransactionError as exc:
            raise ConflictError(f"ingest state changed under us: {exc.error_code}") from exc
        for (shard, _), result in zip(shards, results, strict=False):
            shard.etag = result.get("etag")
        return [op[1]["RowKey"] for op in ops[len(shards):]]

    def _shard_op(self, shard: Shard, data: dict[str, bytes]) -> Any:
        entity = {"PartitionKey": self.tenant_id, "RowKey": shard.row_key,
                  "Count": len(shard.entries), **data}
        if shard.etag:
            return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": shard.etag,
                                       "match_condition": MatchConditions.IfNotModified})
        return ("create", entity)

    # outbox -----------------------------------------------------------------------------
    def outbox_rows(self) -> list[str]:
        query = "PartitionKey eq @pk and RowKey ge 'out:' and RowKey lt 'out;'"
        return [r["RowKey"] for r in self.client.query_entities(
            query, parameters={"pk": self.tenant_id}, select=["RowKey"])]

    def outbox(self, row_key: str) -> tuple[list[dict[str, Any]], int, str] | None:
        row = self._get(row_key)
        if row is None:
            return None
        return _unpack(row) or [], int(row.get("Sent", 0)), row.metadata["etag"]

    def mark_sent(self, row_key: str, sent: int, etag: str) -> str:
        """How many of the row's events are sent; StateChanged when another relay moved
        the row (or finished it) since `etag`."""
        try:
            result = self.client.update_entity(
                {"PartitionKey": self.tenant_id, "RowKey": row_key, "Sent": sent},
                mode=UpdateMode.MERGE, etag=etag,
                match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code not in (404, 412):
                raise
            raise StateChanged(f"outbox {row_key} of {self.tenant_id} was taken") from exc
        return result["etag"]

    def delete_outbox(self, row_key: str, etag: str) -> None:
        """Drop a sent outbox row; StateChanged when another relay moved it since `etag`
        (already gone is fine)."""
        try:
            self.client.delete_entity(self.tenant_id, row_key, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise
            raise StateChanged(f"outbox {row_key} of {self.tenant_id} was taken") from exc

    # tally -------------------------------------------------------------------------------
    def pending(self) -> tuple[list[str], int]:
        """The outbox rows, and how many changes of the tally are not yet copied to the
        summaries: one query (the relay's first look)."""
        query = ("PartitionKey eq @pk and (RowKey eq 'tally' or "
                 "(RowKey ge 'out:' and RowKey lt 'out;'))")
        rows, behind = [], 0
        for row in self.client.query_entities(query, parameters={"pk": self.tenant_id},
                                              select=["RowKey", "Seq", "Copied"]):
            if row["RowKey"] == TALLY:
                behind = int(row.get("Seq") or 0) - int(row.get("Copied") or 0)
            else:
                rows.append(row["RowKey"])
        return rows, behind

    def tally(self) -> Tally:
        row = self._get(TALLY)
        if row is None:
            return Tally()
        return Tally(Counts.of(row), bytes(row.get("Seen") or b""),
                     int(row.get("Copied") or 0), row.metadata["etag"])

    def _tally_op(self, tally: Tally) -> Any:
        entity = {"PartitionKey": self.tenant_id, "RowKey": TALLY,
                  **tally.counts.properties(), "Seen": tally.seen,
                  "Copied": str(tally.copied)}
        if tally.etag is None:
            return ("create", entity)
        return ("update", entity, {"mode": UpdateMode.REPLACE, "etag": tally.etag,
                                   "match_condition": MatchConditions.IfNotModified})

    def mark_sent_counted(self, row_key: str, sent: int, etag: str, tally: Tally) -> str:
        """`mark_sent` and the tally as counted with that chunk, in one transaction;
        returns the row's new etag and sets the tally's. StateChanged (nothing written)
        when either moved since it was read."""
        ops = [("update", {"PartitionKey": self.tenant_id, "RowKey": row_key, "Sent": sent},
                {"mode": UpdateMode.MERGE, "etag": etag,
                 "match_condition": MatchConditions.IfNotModified}), self._tally_op(tally)]
        try:
            results = batch.submit_transaction(self.client, ops)
        except TableTransactionError as exc:
            if exc.status_code not in (404, 409, 412):
                raise
            raise StateChanged(f"outbox {row_key} of {self.tenant_id} was taken") from exc
        except ServiceResponseError:  # the answer was lost (a POST is not retried)
            return self._after_lost_answer(row_key, sent, etag, tally)
        tally.etag = results[1].get("etag")
        return results[0]["etag"]

    def _after_lost_answer(self, row_key: str, sent: int, etag: str, tally: Tally) -> str:
        """Whether the transaction whose answer was lost was made (the tally's `seq` is
        this one's): then its new etags; if the row is as it was, it is sent once more."""
        row, found = self._get(row_key), self._get(TALLY)
        if row is not None and found is not None and int(row.get("Sent", 0)) == sent \
                and str(found.get("Seq")) == str(tally.counts.seq):
            tally.etag = found.metadata["etag"]
            return row.metadata["etag"]
        if row is None or row.metadata["etag"] != etag:
            raise StateChanged(f"outbox {row_key} of {self.tenant_id} was taken")
        try:
            results = batch.submit_transaction(self.client, [
                ("update", {"PartitionKey": self.tenant_id, "RowKey": row_key, "Sent": sent},
                 {"mode": UpdateMode.MERGE, "etag": etag,
                  "match_condition": MatchConditions.IfNotModified}), self._tally_op(tally)])
        except TableTransactionError as exc:
            raise StateChanged(f"outbox {row_key} of {self.tenant_id} was taken") from exc
        tally.etag = results[1].get("etag")
        return results[0]["etag"]

    def save_tally(self, tally: Tally) -> None:
        """The tally as given (its copy mark, or a backfill's counts), ETag-guarded;
        sets its new etag. StateChanged when it moved since it was read."""
        try:
            tally.etag = batch.submit_transaction(self.client, [self._tally_op(tally)]
                                                  )[0].get("etag")
        except TableTransactionError as exc:
            if exc.status_code not in (404, 409, 412):
                raise
            raise StateChanged(f"tally of {self.tenant_id} moved") from exc


def _next_day(day: str) -> str:
    return (datetime.strptime(day, "%Y%m%d") + timedelta(days=1)).strftime("%Y%m%d")
