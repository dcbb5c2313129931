"""The AlertIndex table: every stored alert across tenants, newest `lastUpdateTime` first.

Why: the Alerts table is partitioned by tenant, so "the newest 50 across 500 tenants" was
one query per tenant over every row of the range. Here partition = the UTC day of the
alert's version (`lastUpdateTime`), row key = that version with each digit inverted (so
ascending keys run newest first) + `~` + tenant + `~` + the alert's Alerts row key, with
the columns the alerts list shows. A page is a keyset range read of one day at a time.

Who writes it: the relay (shared/ingest/index_feed.py), from the events of each outbox
chunk before it records the chunk as sent: the new version's entry upserted, then the
replaced version's entry deleted (`record`). Off the fetch path, so the index trails the
Alerts table by the relay's lag; a resent chunk writes the same again, harmlessly.

The invariant: once the relay has caught up, every stored alert has exactly one entry, at
the key of its stored version (tests/unit/test_alert_index_in_step.py). An entry whose
version differs from its alert row's is not the alert's: one the relay has not yet
replaced (the list trails the rows by the relay's lag), or one put back by a relay that
wrote after losing its lease (it checks for that: shared/ingest/index_feed.py) or by a
backfill racing the relay (it checks too: `backfill`). The portal reads the index
alone; an older entry of an alert it meets on the same page is skipped and deleted, and
`repair` deletes any entry not at its alert row's version.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import codec
from shared.storage import batch
from shared.storage.alert_rows import OVERFLOW_MARK
from shared.storage.alerts import AlertRepository
from shared.storage.limits import packed

FILTERED = ("Severity", "Status", "Category", "RbacGroupName")  # own columns: filters
SHOWN = ("Title", "ComputerDnsName", "DetectionSource", "AlertCreationTime")  # one column
PRODUCT = "Product"  # shown after them, for an alert not read from Defender for Endpoint's API
MAX_CHARS = 400  # per listed string: 100 entries stay far under 4 MiB a transaction
FILTERABLE = ("Tenant", "Severity", "Status", "Category", "RbacGroupName")
_INVERT = str.maketrans("0123456789", "9876543210")
_TOKEN = re.compile(r"[0-9]{21}~[^~/\\#?]{1,200}~[^/\\#?]{1,1024}")

PROGRESS = "backfill"  # the backfill's place per tenant: not a day, so never read as one
DONE = "\uffff"  # a backfill's place past every row key
Key = tuple[str, str]  # (PartitionKey, RowKey) of an index entry


def inverted(version: str) -> str:
    """'2026-12-02T23:19:11.1234567Z' -> its 21 digits, each d -> 9-d (newest sorts first)."""
    return re.sub(r"[^0-9]", "", version).translate(_INVERT)


def key_of(tenant_id: str, alert_key: str, version: str) -> Key:
    """The index key of an alert (its Alerts row key) at a version (normalized)."""
    return version[:10], f"{inverted(version)}~{tenant_id}~{alert_key}"


def day_of_key(row_key: str) -> str:
    """The partition (YYYY-MM-DD) a row key belongs in."""
    d = row_key[:8].translate(_INVERT)
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}"


def valid_token(text: str) -> bool:
    """Whether `text` can be an index row key (a page's `after`): its form, and a real day."""
    if not _TOKEN.fullmatch(text):
        return False
    day = day_of_key(text)
    return "01" <= day[5:7] <= "12" and "01" <= day[8:10] <= "31"


def _clip(value: Any) -> Any:
    return value[:MAX_CHARS] if isinstance(value, str) else value


def entry_of(main: Mapping[str, Any]) -> dict[str, Any]:
    """The index entry of an alert's main row (as `alert_rows` builds it). Few columns,
    because storage's cost is per property (the bench: 15 of them doubled Azurite's CPU
    per alert): what the key holds is not repeated (version, tenant, alert), the columns
    filtered on are their own, what is only shown is one JSON list (`Shown`)."""
    pk, rk = key_of(main["PartitionKey"], main["RowKey"], main["Version"])
    entry: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk, "Tenant": main["PartitionKey"]}
    for column in FILTERED:
        value = main.get(column)
        if value is not None:
            entry[column] = _clip(value)
    listed = [_clip(main.get(c) or "") for c in SHOWN]
    if main.get(PRODUCT):  # Graph's alerts: an mde alert's entry stays as it always was
        listed.append(_clip(main[PRODUCT]))
    entry["Shown"] = codec.dumps_text(listed)
    return entry


def parts(row_key: str) -> tuple[str, str, str]:
    """(version, tenant, Alerts row key) of an index row key."""
    d = row_key[:21].translate(_INVERT)
    tenant, alert_key = row_key[22:].split("~", 1)
    return (f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}.{d[14:]}Z",
            tenant, alert_key)


def shown(entry: Mapping[str, Any]) -> dict[str, str]:
    """The listed columns of an entry, by their Alerts column names ("Product" is ""
    for an alert read from Defender for Endpoint's API)."""
    try:
        values = codec.loads(str(entry.get("Shown") or "[]"))
    except ValueError:
        values = []
    if not isinstance(values, list):
        values = []
    names = (*SHOWN, PRODUCT)
    return dict(zip(names, [*values, *[""] * len(names)][:len(names)], strict=True))


def mains(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The main rows among an alert transaction's rows (not the overflow rows)."""
    return [r for r in rows if OVERFLOW_MARK not in r["RowKey"]]


class AlertIndex:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    # writes ----------------------------------------------------------------------------
    def put(self, entries: list[dict[str, Any]]) -> None:
        """Upsert entries: one transaction per day and ~100 entries (idempotent)."""
        entries = sorted(entries, key=lambda e: (e["PartitionKey"], e["RowKey"]))
        for _, day in groupby(entries, key=lambda e: e["PartitionKey"]):
            for group in packed([[e] for e in day]):
                self._submit([("upsert", e, {"mode": UpdateMode.REPLACE}) for e in group])

    def record(self, entries: list[dict[str, Any]], replaced: Iterable[Key]) -> None:
        """The relay's write for a chunk of events: the new entries first, then the
        entries of the versions they replaced (those not among the new). A crash between
        leaves an extra entry (skipped by readers, gone on the resend), never a missing one;
        writing the same again is harmless."""
        self.put(entries)
        fresh = {(e["PartitionKey"], e["RowKey"]) for e in entries}
        stale = [k for k in replaced if k not in fresh]
        if stale:
            self.remove(stale)

    def remove(self, keys: Iterable[Key]) -> None:
        """Delete entries, those already gone included (a redelivery deletes again)."""
        for day, group in groupby(sorted(set(keys)), key=lambda k: k[0]):
            rows = [rk for _, rk in group]
            for start in range(0, len(rows), 100):
                part = rows[start:start + 100]
                try:
                    self._submit([("delete", {"PartitionKey": day, "RowKey": rk})
                                  for rk in part])
                except TableTransactionError:  # one of them already gone: one by one
                    for rk in part:
                        self._delete(day, rk)

    def _submit(self, operations: list[Any]) -> None:
        batch.submit_transaction(self.client, operations)

    def _delete(self, day: str, row_key: str) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.client.delete_entity(day, row_key)

    # reads -----------------------------------------------------------------------------
    def read(self, day: str, after: str, where: Mapping[str, tuple[str, ...]], limit: int,
             per_request: int = 1000) -> Iterator[dict[str, Any]]:
        """A day's entries with row key > `after`, in key order (newest first), whose
        columns in `where` take one of the given values; at most `limit` are read, at
        most `per_request` a request (the table service answers as many as asked for,
        whether the caller takes them or not)."""
        clauses, params = ["PartitionKey eq @day"], {"day": day}
        if after:
            clauses.append("RowKey gt @after")
            params["after"] = after
        for n, (column, values) in enumerate(sorted(where.items())):
            if column not in FILTERABLE or not values:
                raise ValueError(f"not a filter of the index: {column}")
            names = [f"f{n}v{i}" for i in range(len(values))]
            # spaced: the SDK finds @parameters by splitting on spaces
            clauses.append("( " + " or ".join(f"{column} eq @{p}" for p in names) + " )")
            params.update(zip(names, values, strict=True))
        rows = self.client.query_entities(" and ".join(clauses), parameters=params,
                                          results_per_page=max(1, min(1000, limit,
                                                                      per_request)))
        for count, row in enumerate(rows):
            if count >= limit:
                return
            yield dict(row)

    def every(self) -> list[dict[str, Any]]:
        """Every entry (tests and `repair`; not for a request's path)."""
        return [dict(row) for row in self.client.list_entities()
                if row["PartitionKey"] != PROGRESS]

    # the backfill's place, per tenant (a partition no day can be) --------------------
    def backfilled_to(self, tenant_id: str) -> str | None:
        """The last Alerts row key the backfill indexed for the tenant (DONE when it
        has done them all), None when it never started."""
        try:
            return str(self.client.get_entity(PROGRESS, tenant_id)["After"])
        except ResourceNotFoundError:
            return None

    def mark_backfilled(self, tenant_id: str, after: str) -> None:
        self.client.upsert_entity({"PartitionKey": PROGRESS, "RowKey": tenant_id,
                                   "After": after}, mode=UpdateMode.REPLACE)


def valid(entry: Mapping[str, Any], stored_version: str | None) -> bool:
    """Whether an entry is its alert's (the Alerts row is at the entry's version)."""
    return stored_version is not None and stored_version == parts(entry["RowKey"])[0]


def stored_version(alerts: AlertRepository, entry: Mapping[str, Any]) -> str | None:
    """The version of the entry's alert as the Alerts table holds it (None: not stored)."""
    _, tenant, alert_key = parts(entry["RowKey"])
    return alerts.version(tenant, alert_key)


def repair(alerts: AlertRepository, index: AlertIndex, entries: Iterable[Mapping[str, Any]]
           ) -> int:
    """Delete the outdated entries among `entries` (and those whose alert row is gone:
    call it only for entries written long enough ago, no write in flight). Returns how
    many were deleted."""
    stale = []
    for entry in entries:
        if not valid(entry, stored_version(alerts, entry)):
            stale.append((str(entry["PartitionKey"]), str(entry["RowKey"])))
    index.remove(stale)
    return len(stale)


@dataclass
class Backfilled:
    """Where a tenant's backfill stands after a call: done or not, and what it did."""

    done: bool
    rows_read: int = 0
    entries: int = 0
    withdrawn: int = 0  # entries of versions that moved while the batch was indexed


def backfill(alerts: AlertRepository, index: AlertIndex, tenant_id: str,
             batch_rows: int = 1000, budget: int | None = None) -> Backfilled:
    """Index the tenant's stored alerts (alerts stored before the index existed), a
    batch at a time from where the last call stopped (kept in the index table): resumable
    after a crash, harmless to repeat, at most about `budget` rows read a call.

    Safe beside a running relay: each batch is read again after its entries are written,
    and the entry of a version that moved meanwhile is withdrawn (the relay writes the
    new version's). An entry written after that check by a backfill that then died is
    outdated at worst: readers skip and delete it."""
    after = index.backfilled_to(tenant_id) or ""
    result = Backfilled(done=after == DONE)
    while after != DONE and (budget is None or result.rows_read < budget):
        rows = alerts.main_rows(tenant_id, after, batch_rows)
        result.rows_read += len(rows)
        found = {r["RowKey"]: r for r in mains(rows) if r.get("Version")}
        index.put([entry_of({**r, "PartitionKey": tenant_id}) for r in found.values()])
        result.entries += len(found)
        if found:
            now = {r["RowKey"]: r.get("Version")
                   for r in alerts.main_rows(tenant_id, after, batch_rows)}
            moved = [key_of(tenant_id, rk, r["Version"]) for rk, r in found.items()
                     if rk in now and now[rk] != r["Version"]]
            index.remove(moved)
            result.withdrawn += len(moved)
        after = rows[-1]["RowKey"] if rows and len(rows) == batch_rows else DONE
        index.mark_backfilled(tenant_id, after)
    result.done = after == DONE
    return result
