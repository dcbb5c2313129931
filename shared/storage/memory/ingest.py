"""In-memory ingest family: ingest state (cursor, lease, budget, version index, outbox),
alert rows, run history, the AppHealth identity row, the poison log, the fan-out ledger
and queues that record what was sent. Each subclasses the real repository and replaces
only what touches a table or queue; tests/contract/test_ingest.py holds both to one
contract.

Failures are the real ones: a commit against a moved ETag raises ConflictError and
changes nothing; a claim of an outbox row another relay moved raises 412, a row gone 404.
`fail_next` injects an error into the next call of a named method (a crash between two
steps, for the service unit tests)."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import codec
from shared.model import Cursor
from shared.storage import alerts, app_health, fanout_ledger, ingest_state, poison_log, runs
from shared.storage.alerts import COLUMNS
from shared.storage.errors import StateChanged
from shared.storage.ingest_state import (
    BUDGET,
    CURSOR,
    LEASE,
    RELAY_LEASE,
    TALLY,
    ConflictError,
    Index,
    IndexEntry,
    Opening,
    Shard,
    Snapshot,
    Tally,
)
from shared.storage.keys import encode_key
from shared.storage.memory import new_etag, next_number
from shared.storage.memory.notify import MemoryAppHealth as _NotifyAppHealth
from shared.storage.tenant_summaries import Counts, TenantSummaries


class Faults:
    """`fail_next("commit", SystemExit(...))`: the next call of that method raises."""

    def __init__(self) -> None:
        self.armed: dict[str, BaseException] = {}

    def fail_next(self, method: str, error: BaseException) -> None:
        self.armed[method] = error

    def check(self, method: str) -> None:
        error = self.armed.pop(method, None)
        if error is not None:
            raise error


# ingest state ---------------------------------------------------------------------------
class MemoryIngestStates(ingest_state.IngestStates):
    """Every tenant's partition: row key -> (properties, etag)."""

    def __init__(self) -> None:
        self.partitions: dict[str, dict[str, tuple[dict[str, Any], str]]] = {}
        self.lock = threading.Lock()  # commits run on their own thread
        self.faults = Faults()

    def of(self, tenant_id: str) -> MemoryIngestState:
        return MemoryIngestState(self, tenant_id)


class MemoryIngestState(ingest_state.IngestState):
    def __init__(self, states: MemoryIngestStates, tenant_id: str) -> None:
        self.states, self.tenant_id = states, tenant_id
        self.rows = states.partitions.setdefault(tenant_id, {})

    def _value(self, row: str) -> tuple[dict[str, Any], str] | None:
        return self.rows.get(row)

    def _put(self, row: str, values: dict[str, Any]) -> str:
        etag = new_etag()
        self.rows[row] = (values, etag)
        return etag

    # cursor ---------------------------------------------------------------------------
    def cursor(self) -> tuple[Cursor | None, str | None]:
        found = self._value(CURSOR)
        if found is None:
            return None, None
        return ingest_state.cursor_of(found[0]), found[1]

    # lease ----------------------------------------------------------------------------
    def acquire_lease(self, owner: str, seconds: int) -> tuple[bool, datetime | None]:
        now = datetime.now(UTC)
        with self.states.lock:
            found = self._value(LEASE)
            if found is not None and found[0]["Owner"] != owner and found[0]["Until"] > now:
                return False, found[0]["Until"]
            self._put(LEASE, {"Owner": owner, "Until": now + timedelta(seconds=seconds)})
        return True, None

    def borrow_lease(self, owner: str, seconds: int, short: int) -> str | None:
        now = datetime.now(UTC)
        with self.states.lock:
            found = self._value(LEASE)
            if found is not None and found[0]["Owner"] != owner \
                    and found[0]["Until"] > now + timedelta(seconds=short):
                return None
            return self._put(LEASE, {"Owner": owner, "Until": now + timedelta(seconds=seconds)})

    def release_lease(self, owner: str) -> None:
        with self.states.lock:
            found = self._value(LEASE)
            if found is not None and found[0]["Owner"] == owner:
                del self.rows[LEASE]

    # relay lease ----------------------------------------------------------------------
    def take_relay_lease(self, owner: str, seconds: int) -> tuple[str | None, datetime | None]:
        now = datetime.now(UTC)
        with self.states.lock:
            found = self._value(RELAY_LEASE)
            if found is not None and found[0]["Owner"] != owner and found[0]["Until"] > now:
                return None, found[0]["Until"]
            return self._put(RELAY_LEASE, {"Owner": owner,
                                           "Until": now + timedelta(seconds=seconds)}), None

    def renew_relay_lease(self, owner: str, seconds: int, etag: str) -> str | None:
        self.states.faults.check("renew_relay_lease")
        with self.states.lock:
            found = self._value(RELAY_LEASE)
            if found is None or found[1] != etag:
                return None
            return self._put(RELAY_LEASE, {"Owner": owner, "Until": datetime.now(UTC)
                                           + timedelta(seconds=seconds)})

    def release_relay_lease(self, etag: str) -> None:
        with self.states.lock:
            found = self._value(RELAY_LEASE)
            if found is not None and found[1] == etag:
                del self.rows[RELAY_LEASE]

    def open(self, owner: str, seconds: int, charge: ingest_state.Charge | None = None
             ) -> Opening:
        found = self._value(CURSOR)
        cursor, etag = self.cursor()
        minutes, _ = self.calls()
        outbox = self.outbox_rows()
        recent = found[0].get("Recent") if found else None
        charged = charge(dict(minutes)) if charge else None
        held, until = self.acquire_lease(owner, seconds)
        if held and charged is not None:
            self.save_calls(charged)
            minutes = charged
        lease = self._value(LEASE) if held else None
        return Opening(held, until, cursor, etag, minutes, outbox,
                       lease[1] if lease else None, copy.deepcopy(recent) or None,
                       held and charged is not None)

    def extend(self, owner: str, seconds: int, lease_etag: str) -> str | None:
        with self.states.lock:
            found = self._value(LEASE)
            if found is None or found[1] != lease_etag:
                return None
            return self._put(LEASE, {"Owner": owner,
                                     "Until": datetime.now(UTC) + timedelta(seconds=seconds)})

    def close(self, owner: str, lease_etag: str | None, minutes: dict[int, int] | None
              ) -> None:
        with self.states.lock:
            found = self._value(LEASE)
            if lease_etag and found is not None and found[1] == lease_etag:
                del self.rows[LEASE]
        if minutes is not None:
            self.save_calls(minutes)

    # budget ---------------------------------------------------------------------------
    def calls(self) -> tuple[dict[int, int], str | None]:
        found = self._value(BUDGET)
        if found is None:
            return {}, None
        return dict(found[0]["Minutes"]), found[1]

    def save_calls(self, minutes: dict[int, int]) -> None:
        self._put(BUDGET, {"Minutes": dict(minutes)})

    # version index --------------------------------------------------------------------
    def load_index(self, days: Iterable[str], into: Index | None = None) -> Index:
        index = into if into is not None else Index()
        wanted = sorted(set(days) - index.days)
        index.days.update(wanted)
        with self.states.lock:
            found = [(key, copy.deepcopy(values["Entries"]), etag)
                     for key, (values, etag) in sorted(self.rows.items())
                     if key.startswith("idx:") and key[4:].rsplit(":", 1)[0] in wanted]
        for key, entries, etag in found:
            index.add(Shard(key, entries, etag))
            for alert_id in entries:
                index.where[alert_id] = key
        return index

    # commit ---------------------------------------------------------------------------
    def commit(self, shards: Snapshot, events: list[bytes], cursor: Cursor,
               cursor_etag: str | None, stamp: str,
               recent: dict[str, IndexEntry] | None = None) -> tuple[list[str], str | None]:
        """All or nothing, each shard and the cursor guarded by its ETag."""
        self.states.faults.check("commit")
        with self.states.lock:
            for key, etag in [*((s.row_key, s.etag) for s, _ in shards),
                              (CURSOR, cursor_etag)]:
                found = self._value(key)
                if (found is None) != (etag is None) or (found and found[1] != etag):
                    raise ConflictError(f"ingest state changed under us: {key}")
            outbox = []
            for part, data in ingest_state._outbox_parts(events) if events else []:
                key = f"out:{stamp}:{next_number():08d}"
                self._put(key, {"Events": codec.unpack(data), "Count": len(part),
                                "Sent": 0})
                outbox.append(key)
            for shard, data in shards:
                entries = codec.unpack(b"".join(data[k] for k in sorted(data)))
                shard.etag = self._put(shard.row_key, {"Entries": entries})
            packed = ingest_state._recent_packed(recent)  # kept as the real row keeps it
            etag = self._put(CURSOR, {**ingest_state.cursor_properties(cursor),
                                      "UpdatedAt": datetime.now(UTC),
                                      "Recent": codec.unpack(packed) if packed else None})
        return outbox, etag

    def commit_alone(self, shards: Snapshot, events: list[bytes], stamp: str) -> list[str]:
        """All or nothing, each shard guarded by its ETag; the cursor untouched."""
        self.states.faults.check("commit_alone")
        with self.states.lock:
            for shard, _ in shards:
                found = self._value(shard.row_key)
                if (found is None) != (shard.etag is None) or (
                        found and found[1] != shard.etag):
                    raise ConflictError(f"ingest state changed under us: {shard.row_key}")
            outbox = []
            for part, data in ingest_state._outbox_parts(events) if events else []:
                key = f"out:{stamp}:{next_number():08d}"
                self._put(key, {"Events": codec.unpack(data), "Count": len(part),
                                "Sent": 0})
                outbox.append(key)
            for shard, data in shards:
                entries = codec.unpack(b"".join(data[k] for k in sorted(data)))
                shard.etag = self._put(shard.row_key, {"Entries": entries})
        return outbox

    # outbox ---------------------------------------------------------------------------
    def outbox_rows(self) -> list[str]:
        with self.states.lock:
            return sorted(k for k in self.rows if k.startswith("out:"))

    def outbox(self, row_key: str) -> tuple[list[dict[str, Any]], int, str] | None:
        found = self._value(row_key)
        if found is None:
            return None
        return copy.deepcopy(found[0]["Events"]), int(found[0]["Sent"]), found[1]

    def _guarded(self, row_key: str, etag: str) -> dict[str, Any]:
        found = self._value(row_key)
        if found is None or found[1] != etag:
            raise StateChanged(f"outbox row {row_key} was taken")
        return found[0]

    def mark_sent(self, row_key: str, sent: int, etag: str) -> str:
        self.states.faults.check("mark_sent")
        with self.states.lock:
            values = self._guarded(row_key, etag)
            return self._put(row_key, {**values, "Sent": sent})

    def delete_outbox(self, row_key: str, etag: str) -> None:
        """As the SDK's delete: a row already gone is no error, a moved one is."""
        with self.states.lock:
            if row_key in self.rows:
                self._guarded(row_key, etag)
                del self.rows[row_key]

    # tally ----------------------------------------------------------------------------
    def pending(self) -> tuple[list[str], int]:
        found = self._value(TALLY)
        behind = found[0]["Counts"].seq - found[0]["Copied"] if found else 0
        return self.outbox_rows(), behind

    def tally(self) -> Tally:
        found = self._value(TALLY)
        if found is None:
            return Tally()
        values, etag = found
        return Tally(copy.deepcopy(values["Counts"]), values["Seen"], values["Copied"], etag)

    def _tally_guarded(self, tally: Tally) -> None:
        found = self._value(TALLY)
        if (found is None) != (tally.etag is None) or (found and found[1] != tally.etag):
            raise StateChanged(f"tally of {self.tenant_id} moved")

    def _put_tally(self, tally: Tally) -> None:
        tally.etag = self._put(TALLY, {"Counts": copy.deepcopy(tally.counts),
                                       "Seen": tally.seen, "Copied": tally.copied})

    def mark_sent_counted(self, row_key: str, sent: int, etag: str, tally: Tally) -> str:
        self.states.faults.check("mark_sent_counted")
        with self.states.lock:
            values = self._guarded(row_key, etag)
            self._tally_guarded(tally)
            self._put_tally(tally)
            return self._put(row_key, {**values, "Sent": sent})

    def save_tally(self, tally: Tally) -> None:
        self.states.faults.check("save_tally")
        with self.states.lock:
            self._tally_guarded(tally)
            self._put_tally(tally)


# tenant summaries -----------------------------------------------------------------------
class MemoryTenantSummaries(TenantSummaries):
    """tenant id -> the newest counts copied."""

    def __init__(self) -> None:
        self.rows: dict[str, Counts] = {}
        self.marks: dict[str, str] = {}
        self.lock = threading.Lock()
        self.faults = Faults()
        self.reads = 0
        self.totals: tuple[datetime, dict[str, dict[str, int]]] | None = None

    def publish(self, tenant_id: str, counts: Counts) -> bool:
        self.faults.check("publish")
        with self.lock:
            have = self.rows.get(tenant_id)
            if have is not None and have.seq >= counts.seq:
                return False
            self.rows[tenant_id] = copy.deepcopy(counts)
        return True

    def all(self) -> dict[str, Counts]:
        with self.lock:
            self.reads += 1
            return copy.deepcopy(self.rows)

    def between(self, first: str, last: str) -> dict[str, Counts]:
        return {t: c for t, c in self.all().items() if first <= t <= last}

    def of(self, tenant_ids: Iterable[str]) -> dict[str, Counts]:
        rows = self.all()
        return {t: rows[t] for t in tenant_ids if t in rows}

    def raised_totals(self, max_age: timedelta) -> dict[str, dict[str, int]]:
        now = datetime.now(UTC)
        if self.totals is not None and self.totals[0] > now - max_age:
            return copy.deepcopy(self.totals[1])
        totals = Counts()
        for counts in self.all().values():
            for (day, severity), n in counts.per_day().items():
                totals.add(severity, day, 0, n)
        self.totals = (now, totals.raised)
        return copy.deepcopy(totals.raised)

    def progress(self, part: str) -> str:
        return self.marks.get(part, "")

    def save_progress(self, part: str, through: str) -> None:
        self.marks[part] = through


# alert rows -----------------------------------------------------------------------------
_ATOM = re.compile(r"(\w+) (eq|ge|le|gt|lt) (@\w+|'[^']*')")


def _matches(clause: str, row: dict[str, Any], parameters: dict[str, Any]) -> bool:
    """One clause of the filters `AlertFilter.query` writes: `Col op @param`, `Col op
    'text'`, or such atoms or-ed in parentheses."""
    clause = clause.strip()
    if clause.startswith("("):
        return any(_matches(atom, row, parameters) for atom in clause[1:-1].split(" or "))
    match = _ATOM.fullmatch(clause)
    if match is None:
        raise ValueError(f"the memory alerts do not read this filter: {clause}")
    column, op, operand = match.groups()
    value = parameters[operand[1:]] if operand.startswith("@") else operand[1:-1]
    if column not in row:
        return False
    have = row[column]
    return {"eq": have == value, "ge": have >= value, "le": have <= value,
            "gt": have > value, "lt": have < value}[op]


class MemoryAlerts(alerts.AlertRepository):
    """Rows by (tenant, row key), as the last upsert left them."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()  # the ingest writers store from several threads
        self.faults = Faults()
        self.writes = 0  # transactions stored

    def store(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.faults.check("store")
        if len({row["PartitionKey"] for row in rows}) > 1:
            raise ValueError("one partition per transaction")
        with self.lock:
            for row in rows:
                self.rows[(row["PartitionKey"], row["RowKey"])] = dict(row)
            self.writes += 1
        return [{"etag": new_etag()} for _ in rows]

    def get_stored(self, tenant_id: str, alert_id: str) -> alerts.StoredAlert | None:
        with self.lock:
            row = self.rows.get((tenant_id, encode_key(alert_id)))
        return alerts.stored(row) if row is not None else None

    def _entity(self, tenant_id: str, row_key: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.rows.get((tenant_id, row_key))
        return dict(row) if row is not None else None
    def triage_fields(self, tenant_id: str, alert_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.rows.get((tenant_id, encode_key(alert_id)))
        return alerts.triage_fields(row) if row is not None else None

    def version(self, tenant_id: str, row_key: str) -> str | None:
        with self.lock:
            row = self.rows.get((tenant_id, row_key))
        return str(row.get("Version") or "") or None if row is not None else None

    def main_rows(self, tenant_id: str, after: str, limit: int) -> list[dict[str, Any]]:
        return [{k: row[k] for k in [*COLUMNS, "Version"] if k in row}
                for row in self._partition(tenant_id) if row["RowKey"] > after][:limit]
    def get_stored_many(self, tenant_id: str, alert_ids: Iterable[str]
                        ) -> dict[str, alerts.StoredAlert]:
        found = {a: self.get_stored(tenant_id, a) for a in alert_ids}
        return {a: s for a, s in found.items() if s is not None}

    def _partition(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(row) for (pk, _), row in sorted(self.rows.items())
                    if pk == tenant_id]

    def search(self, query: str, parameters: dict[str, Any], limit: int
               ) -> tuple[list[Any], bool]:
        clauses = query.split(" and ")
        if clauses[0] != "PartitionKey eq @pk":
            raise ValueError("the memory alerts read one tenant's partition at a time")
        found = [{k: row[k] for k in COLUMNS if k in row}
                 for row in self._partition(parameters["pk"])
                 if all(_matches(c, row, parameters) for c in clauses[1:])]
        return alerts.bounded(found, limit)

    def open_or_raised_since(self, tenant_id: str, first_day: str, limit: int
                             ) -> tuple[list[Any], bool]:
        found = [{k: row[k] for k in ("Severity", "Status", "AlertCreationTime") if k in row}
                 for row in self._partition(tenant_id)
                 if row.get("Status") in ("New", "InProgress")
                 or str(row.get("AlertCreationTime", "")) >= first_day]
        return alerts.bounded(found, limit)


# run history, app health, poison log ----------------------------------------------------
class MemoryRuns(runs.RunHistory):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], runs.RunRecord] = {}

    def record(self, run: runs.RunRecord) -> None:
        stored = copy.copy(run)
        stored.error = stored.error[:4000]
        self.rows[(run.tenant_id, runs._row_key(run.started, run.run_id))] = stored

    def recent(self, tenant_id: str, limit: int = 50) -> list[runs.RunRecord]:
        return [copy.copy(r) for (pk, _), r in sorted(self.rows.items())
                if pk == tenant_id][:limit]

    def prune(self, tenant_id: str, days: int, now: datetime | None = None) -> int:
        cutoff = runs._row_key((now or datetime.now(UTC)) - timedelta(days=days), "")
        old = [k for k in self.rows if k[0] == tenant_id and k[1] > cutoff]
        for key in old:
            del self.rows[key]
        return len(old)

    def outcomes(self, tenant_id: str) -> list[str]:
        """The tenant's run outcomes, oldest first (for tests)."""
        return [r.outcome for r in reversed(self.recent(tenant_id, 10**6))]


class MemoryAppHealth(_NotifyAppHealth, app_health.AppHealth):
    """The mail row (notify's fake) and the identity row."""

    def __init__(self) -> None:
        super().__init__()
        self._identity: dict[str, Any] | None = None

    def identity_failed(self, reason: str, error: str, at: datetime | None = None) -> None:
        self._identity = {"reason": reason, "error": error, "at": at or datetime.now(UTC)}

    def identity_failure(self, **probe: Any) -> dict[str, Any] | None:
        return dict(self._identity) if self._identity else None


class MemoryPoisonLog(poison_log.PoisonLogRepository):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def add(self, queue_name: str, body: str, reason: str, tenant_id: str,
            at: datetime | None = None, message_id: str | None = None) -> str:
        now = at or datetime.now(UTC)
        row_key = poison_log.row_key_of(now, message_id or f"{next_number():08x}")
        self.rows[(queue_name, row_key)] = {
            "PartitionKey": queue_name, "RowKey": row_key,
            "Body": poison_log.clip_text(body), "Reason": reason, "Tenant": tenant_id,
            "At": now}
        return row_key

    def recent(self, queue_name: str, limit: int = 50) -> list[dict[str, Any]]:
        return [dict(row) for (pk, _), row in sorted(self.rows.items())
                if pk == queue_name][:limit]

    def counts_since(self, since: datetime, limit: int) -> dict[str, int]:
        cutoff = poison_log._ticks_key(since)
        counts: dict[str, int] = {}
        for n, (queue_name, _) in enumerate(sorted(k for k in self.rows if k[1] < cutoff)):
            if n >= limit:
                break
            counts[queue_name] = counts.get(queue_name, 0) + 1
        return counts


# the fan-out's ledger -------------------------------------------------------------------
class MemoryFanoutLedger(fanout_ledger.FanoutLedger):
    """Each run's enqueued tenants, by run time (a run records as it goes: replaced)."""

    def __init__(self) -> None:
        self.runs: dict[datetime, list[str]] = {}

    def record(self, run_at: datetime, tenant_ids: Sequence[str]) -> None:
        self.runs[run_at] = list(tenant_ids)

    def recent(self, since: datetime) -> dict[str, datetime]:
        cut = fanout_ledger._row_key(since, 0)
        marks: dict[str, datetime] = {}
        for at in sorted(self.runs):
            if fanout_ledger._row_key(at, 0) >= cut:
                marks.update(dict.fromkeys(self.runs[at], at))
        return marks

    def prune(self, before: datetime) -> None:
        cut = fanout_ledger._row_key(before, 0)
        for at in [at for at in self.runs if fanout_ledger._row_key(at, 0) < cut]:
            del self.runs[at]


# queues ---------------------------------------------------------------------------------
class MemoryQueue:
    """Records every message put, with its visibility delay (None: none given)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None]] = []
        self.lock = threading.Lock()
        self.faults = Faults()

    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        self.faults.check("send_message")
        with self.lock:
            self.sent.append((content, visibility_timeout))

    def texts(self) -> list[str]:
        with self.lock:
            return [text for text, _ in self.sent]

    def take(self) -> list[tuple[str, int | None]]:
        """What was sent since the last take, and forget it (a consumer's receive)."""
        with self.lock:
            taken, self.sent = self.sent, []
        return taken
