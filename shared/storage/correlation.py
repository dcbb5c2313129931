"""The Correlation and CorrelationIndex tables: where each indicator was seen, and the
cross-tenant clusters (docs/correlation.md).

Correlation: one partition per indicator (`Indicator.key`), so "which tenants and alerts
have this indicator, in this time window" is one partition range read, whatever the
number of tenants or of other indicators' sightings:

* `a`: the head, the indicator's cluster state (version, the tenants of that version,
  first and last sighting, counts, severities) and what was last published (version
  sent, index entries written). Every write to the partition is guarded by its ETag.
* `b~<tenant>`: the tenant's reach (first and last sighting, alerts, top severity).
* `e~<version>`: a cluster version's event, fixed when the version is made, so a
  redelivery sends the same text.
* `s~<inverted time>~<tenant>~<alert>`: a sighting, keyed by the alert's creation time
  (newest first), so every version and every redelivery of an alert is the same row.

A sighting, its tenant's reach, the head and a new version's event are one entity-group
transaction: the sighting is created (so a sighting already there says the alert was
counted, and nothing is written twice) and the head updated under its ETag (so two
workers on one indicator never lose a tenant).

`~suppressed` holds the suppressions (row key: the indicator's key) and `~removed` who
removed one (row key: indicator key and the suppression's creation time, so a removal
redone writes the same row).

CorrelationIndex: the list page's clusters, in two partitions, `recent` (row key: the
last sighting inverted, then the indicator key) and `reach` (tenants in the window,
inverted, then the same), each a keyset range read a page.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
)
from azure.data.tables import TableTransactionError, UpdateMode

from shared import codec
from shared.correlation.model import Indicator, Sighting, Suppression, TenantReach
from shared.storage import batch
from shared.storage.errors import AlreadyExists, StateChanged
from shared.storage.keys import encode_key
from shared.storage.paired_tables import PairedTables

HEAD, REACH, EVENT, SIGHTING = "a", "b~", "e~", "s~"
SUPPRESSED, REMOVED = "~suppressed", "~removed"
BACKFILL, DONE = "~backfill", "\uffff"  # the backfill's place per tenant; past every row
RECENT, WIDEST = "recent", "reach"
ORDERS = (RECENT, WIDEST)
CHUNK = 30_000  # characters of one string property (64 KiB of UTF-16), with room
MAX_TEXT = 400  # a title, a tenant name, a reason: clipped where stored
MAX_ALERT_IDS = 20  # per tenant's reach, newest first
_INVERT = str.maketrans("0123456789", "9876543210")
_TOKEN = re.compile(r"[0-9]{5}~[0-9]{21}~[a-z0-9_]{1,12}-[0-9a-f]{40}|"
                    r"[0-9]{21}~[a-z0-9_]{1,12}-[0-9a-f]{40}")
_SIGHTING_TOKEN = re.compile(r"s~[0-9]{21}~[^/\\#?]{1,1100}")


def inverted(time: str) -> str:
    """A time's 21 digits, each d -> 9-d: ascending keys run newest first."""
    return re.sub(r"[^0-9]", "", time).ljust(21, "0")[:21].translate(_INVERT)


def _clip(value: Any) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def split(name: str, text: str) -> dict[str, str]:
    """A long text over properties `name`, `name1`, ... of CHUNK characters."""
    parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    return {(name if n == 0 else f"{name}{n}"): part for n, part in enumerate(parts)}


def joined(entity: dict[str, Any], name: str) -> str:
    out, n = [str(entity.get(name) or "")], 1
    while f"{name}{n}" in entity:
        out.append(str(entity[f"{name}{n}"]))
        n += 1
    return "".join(out)


def _json(text: str, default: Any) -> Any:
    try:
        value = codec.loads(text) if text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


@dataclass
class Head:
    """An indicator's cluster state, and what of it was published."""

    indicator: Indicator
    version: int = 0  # 0: not a cluster (yet)
    members: list[str] = field(default_factory=list)  # the tenants of the version
    reach: int = 0  # tenants in the window at the last sighting
    first_seen: str = ""
    last_seen: str = ""
    alert_count: int = 0
    severities: dict[str, int] = field(default_factory=dict)
    published: int = 0  # the last version whose event was sent
    listed: list[list[str]] = field(default_factory=list)  # index keys written
    listed_count: int = 0  # the alert count the index entries show
    quiet: str = ""  # why it forms no cluster now: "suppressed", "floor" or ""

    def entity(self) -> dict[str, Any]:
        return {"PartitionKey": self.indicator.key, "RowKey": HEAD,
                "Kind": self.indicator.kind, **split("Value", self.indicator.value),
                "Version": self.version, **split("Members", codec.dumps_text(self.members)),
                "Reach": self.reach, "FirstSeen": self.first_seen, "LastSeen": self.last_seen,
                "AlertCount": self.alert_count,
                "Severities": codec.dumps_text(self.severities),
                "Published": self.published, "Listed": codec.dumps_text(self.listed),
                "ListedCount": self.listed_count, "Quiet": self.quiet}

    @classmethod
    def of(cls, entity: dict[str, Any]) -> Head:
        return cls(Indicator(str(entity.get("Kind") or ""), joined(entity, "Value")),
                   int(entity.get("Version") or 0),
                   [m for m in _json(joined(entity, "Members"), []) if isinstance(m, str)],
                   int(entity.get("Reach") or 0), str(entity.get("FirstSeen") or ""),
                   str(entity.get("LastSeen") or ""), int(entity.get("AlertCount") or 0),
                   _json(str(entity.get("Severities") or ""), {}),
                   int(entity.get("Published") or 0),
                   _json(str(entity.get("Listed") or ""), []),
                   int(entity.get("ListedCount") or 0), str(entity.get("Quiet") or ""))


@dataclass
class IndicatorState:
    """What a worker reads of an indicator before it writes: the head (None: never
    seen), its ETag, and every tenant's reach."""

    head: Head | None
    etag: str | None
    reaches: dict[str, TenantReach]


@dataclass
class IndexEntry:
    """A cluster as the list page shows it (every tenant, without their alert ids)."""

    partition: str
    row_key: str
    head: Head
    tenants: list[TenantReach]

    def entity(self) -> dict[str, Any]:
        tenants = [[t.tenant_id, t.tenant_name, t.first_seen, t.last_seen, t.alert_count,
                    t.max_severity or ""] for t in self.tenants]
        head = self.head
        return {"PartitionKey": self.partition, "RowKey": self.row_key,
                "Kind": head.indicator.kind, **split("Value", head.indicator.value),
                "Version": head.version, "FirstSeen": head.first_seen,
                "LastSeen": head.last_seen, "AlertCount": head.alert_count,
                "Severities": codec.dumps_text(head.severities),
                **split("Tenants", codec.dumps_text(tenants))}


def index_keys(head: Head) -> list[list[str]]:
    """Where a head's cluster is listed, [partition, row key] in each order."""
    when, key = inverted(head.last_seen), head.indicator.key
    return [[RECENT, f"{when}~{key}"], [WIDEST, f"{99999 - min(head.reach, 99999):05d}~"
                                                f"{when}~{key}"]]


def valid_token(text: str) -> bool:
    return bool(_TOKEN.fullmatch(text))


def sighting_key(s: Sighting) -> str:
    return f"{SIGHTING}{inverted(s.seen_at)}~{s.tenant_id}~{encode_key(s.alert_id)}"


def _sighting_entity(s: Sighting) -> dict[str, Any]:
    return {"PartitionKey": s.indicator.key, "RowKey": sighting_key(s), "Tenant": s.tenant_id,
            "TenantName": _clip(s.tenant_name), "AlertId": s.alert_id, "SeenAt": s.seen_at,
            "Severity": _clip(s.severity), "Title": _clip(s.title),
            "Product": _clip(s.product)}


def _sighting(indicator: Indicator, e: dict[str, Any]) -> Sighting:
    return Sighting(indicator, str(e.get("Tenant") or ""), str(e.get("TenantName") or ""),
                    str(e.get("AlertId") or ""), str(e.get("SeenAt") or ""),
                    e.get("Severity") or None, e.get("Title") or None,
                    e.get("Product") or None)


def _reach_entity(key: str, r: TenantReach) -> dict[str, Any]:
    return {"PartitionKey": key, "RowKey": REACH + r.tenant_id,
            "TenantName": _clip(r.tenant_name), "FirstSeen": r.first_seen,
            "LastSeen": r.last_seen,
            "AlertIds": codec.dumps_text(r.alert_ids[:MAX_ALERT_IDS]),
            "AlertCount": r.alert_count, "MaxSeverity": r.max_severity or ""}


def _reach(e: dict[str, Any]) -> TenantReach:
    return TenantReach(e["RowKey"][len(REACH):], str(e.get("TenantName") or ""),
                       str(e.get("FirstSeen") or ""), str(e.get("LastSeen") or ""),
                       [a for a in _json(str(e.get("AlertIds") or ""), []) if isinstance(a, str)],
                       int(e.get("AlertCount") or 0), e.get("MaxSeverity") or None)


def entry_tenants(e: dict[str, Any]) -> list[TenantReach]:
    out = []
    for t in _json(joined(e, "Tenants"), []):
        if isinstance(t, list) and len(t) == 6:
            out.append(TenantReach(str(t[0]), str(t[1]), str(t[2]), str(t[3]), [],
                                   int(t[4]) if isinstance(t[4], int) else 0, t[5] or None))
    return out


def entry_head(e: dict[str, Any]) -> Head:
    return Head(Indicator(str(e.get("Kind") or ""), joined(e, "Value")),
                int(e.get("Version") or 0), first_seen=str(e.get("FirstSeen") or ""),
                last_seen=str(e.get("LastSeen") or ""),
                alert_count=int(e.get("AlertCount") or 0),
                severities=_json(str(e.get("Severities") or ""), {}))


class CorrelationStore(PairedTables):
    """The Correlation and CorrelationIndex tables."""

    # storage primitives (the memory fake overrides these) ---------------------------------
    def _range(self, table: str, pk: str, low: str, high: str, limit: int | None = None
               ) -> Iterator[tuple[dict[str, Any], str]]:
        """Rows of `pk` with low < RowKey < high, in key order, with their ETags."""
        found = self._client(table).query_entities(
            "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high",
            parameters={"pk": pk, "low": low, "high": high},
            results_per_page=min(limit or 1000, 1000))
        for count, entity in enumerate(found):
            if limit is not None and count >= limit:
                return
            yield dict(entity), entity.metadata["etag"]

    def _transact(self, pk: str, ops: list[tuple[str, dict[str, Any], str | None]]) -> str:
        """One transaction of ("create" | "upsert" | "update" | "merge", entity, etag) on
        the Correlation table; the ETag of the last operation. AlreadyExists when the
        first operation (a create) found its row, StateChanged when another guard failed."""
        actions: list[Any] = []
        for kind, entity, etag in ops:
            if kind in ("update", "merge"):
                actions.append(("update", entity, {
                    "mode": UpdateMode.REPLACE if kind == "update" else UpdateMode.MERGE,
                    "etag": etag, "match_condition": MatchConditions.IfNotModified}))
            elif kind == "create":
                actions.append(("create", entity))
            else:
                actions.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        try:
            results = batch.submit_transaction(self.table, actions)
        except (TableTransactionError, ResourceExistsError) as exc:
            if getattr(exc, "index", None) == 0 and ops[0][0] == "create" and \
                    getattr(exc, "status_code", None) == 409:
                raise AlreadyExists(f"{pk}: {ops[0][1]['RowKey']}") from None
            raise StateChanged(f"correlation of {pk}: {exc}") from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412, 404):
                raise StateChanged(f"correlation of {pk}: {exc}") from None
            raise
        return str(results[-1].get("etag", ""))

    def _put(self, table: str, entity: dict[str, Any]) -> None:
        self._client(table).upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _create(self, table: str, entity: dict[str, Any]) -> None:
        try:
            self._client(table).create_entity(entity)
        except ResourceExistsError:
            raise AlreadyExists(f"{entity['PartitionKey']}: {entity['RowKey']}") from None

    # an indicator's partition -------------------------------------------------------------
    def state(self, indicator: Indicator) -> IndicatorState:
        """The head and every tenant's reach: one range read of the partition's start."""
        head, etag, reaches = None, None, {}
        for entity, row_etag in self._range("table", indicator.key, "", REACH + "\uffff"):
            if entity["RowKey"] == HEAD:
                head, etag = Head.of(entity), row_etag
            elif entity["RowKey"].startswith(REACH):
                reach = _reach(entity)
                reaches[reach.tenant_id] = reach
        return IndicatorState(head, etag, reaches)

    def record(self, sighting: Sighting, reach: TenantReach, head: Head, etag: str | None,
               event: tuple[int, str] | None = None) -> str:
        """A new sighting, its tenant's reach, the head (created when `etag` is None) and
        a new version's event (version, text), all or nothing; the head's new ETag.
        AlreadyExists when the sighting is there (it was counted), StateChanged when the
        head moved since `etag` was read."""
        key = sighting.indicator.key
        ops: list[tuple[str, dict[str, Any], str | None]] = [
            ("create", _sighting_entity(sighting), None),
            ("upsert", _reach_entity(key, reach), None)]
        if event is not None:
            version, text = event
            ops.append(("upsert", {"PartitionKey": key, "RowKey": f"{EVENT}{version:06d}",
                                   **split("Event", text)}, None))
        ops.append(("create" if etag is None else "update", head.entity(), etag))
        return self._transact(key, ops)

    def events(self, indicator: Indicator, after: int) -> list[tuple[int, str]]:
        """The events of the versions after `after`, oldest first: (version, text)."""
        return [(int(e["RowKey"][len(EVENT):]), joined(e, "Event"))
                for e, _ in self._range("table", indicator.key, f"{EVENT}{after:06d}",
                                        EVENT + "\uffff")]

    def mark_published(self, head: Head, etag: str) -> str:
        """The head's published version and index keys, if the head is as read (else
        StateChanged: whoever moved it publishes after)."""
        return self._transact(head.indicator.key, [("merge", {
            "PartitionKey": head.indicator.key, "RowKey": HEAD, "Published": head.published,
            "Listed": codec.dumps_text(head.listed), "ListedCount": head.listed_count},
            etag)])

    def sightings(self, indicator: Indicator, since: str | None = None,
                  after: str | None = None, limit: int = 100
                  ) -> tuple[list[Sighting], str | None]:
        """Sightings newest first (from `since`, after the token `after`): one range read
        of the partition, the next page's token (None: no more)."""
        if after is not None and not _SIGHTING_TOKEN.fullmatch(after):
            raise ValueError("not a page token")
        low = after or SIGHTING
        high = f"{SIGHTING}{inverted(since)}\uffff" if since else SIGHTING + "\uffff"
        rows = [e for e, _ in self._range("table", indicator.key, low, high, limit + 1)]
        found = [_sighting(indicator, e) for e in rows[:limit]]
        return found, (rows[limit - 1]["RowKey"] if len(rows) > limit else None)

    # the cluster index --------------------------------------------------------------------
    def put_listed(self, entries: Iterable[IndexEntry]) -> None:
        for entry in entries:
            self._put("index", entry.entity())

    def drop_listed(self, keys: Iterable[list[str]]) -> None:
        for partition, row_key in keys:
            self._delete("index", partition, row_key)

    def listed(self, order: str, after: str | None, limit: int
               ) -> tuple[list[tuple[Head, list[TenantReach]]], str | None]:
        """A page of the index in `order`, after the token `after`; the next token."""
        if order not in ORDERS:
            raise ValueError("order is recent or reach")
        if after is not None and not valid_token(after):
            raise ValueError("not a page token")
        rows = [e for e, _ in self._range("index", order, after or "", "\uffff", limit + 1)]
        page = [(entry_head(e), entry_tenants(e)) for e in rows[:limit]]
        return page, (rows[limit - 1]["RowKey"] if len(rows) > limit else None)

    # the backfill's place, per tenant ------------------------------------------------------
    def backfilled_to(self, tenant_id: str) -> str:
        """The last Alerts row key the backfill indexed for the tenant ("" for none yet,
        DONE when all)."""
        found = self._get("table", BACKFILL, tenant_id)
        return str(found[0].get("After") or "") if found else ""

    def mark_backfilled(self, tenant_id: str, after: str) -> None:
        self._put("table", {"PartitionKey": BACKFILL, "RowKey": tenant_id, "After": after})

    # suppressions ---------------------------------------------------------------------------
    def suppressions(self) -> list[Suppression]:
        return [Suppression(Indicator(str(e.get("Kind") or ""), joined(e, "Value")),
                            str(e.get("Reason") or ""), str(e.get("Author") or ""),
                            str(e.get("Created") or ""))
                for e, _ in self._range("table", SUPPRESSED, "", "\uffff")]

    def suppression(self, indicator: Indicator) -> Suppression | None:
        found = self._get("table", SUPPRESSED, indicator.key)
        if found is None:
            return None
        e = found[0]
        return Suppression(indicator, str(e.get("Reason") or ""), str(e.get("Author") or ""),
                           str(e.get("Created") or ""))

    def suppress(self, suppression: Suppression) -> Suppression:
        """Idempotent: a suppression already there is kept, and returned."""
        i = suppression.indicator
        with contextlib.suppress(AlreadyExists):
            self._create("table", {"PartitionKey": SUPPRESSED, "RowKey": i.key,
                                   "Kind": i.kind, **split("Value", i.value),
                                   "Reason": _clip(suppression.reason),
                                   "Author": _clip(suppression.author),
                                   "Created": suppression.created})
        return self.suppression(i) or suppression

    def unsuppress(self, indicator: Indicator, author: str, when: str) -> bool:
        """The removal recorded (who, when, what it removed), then the suppression
        deleted; False when there was none. Redone after a crash, the record is the same
        row (keyed by the suppression's creation)."""
        found = self.suppression(indicator)
        if found is None:
            return False
        self._put("table", {"PartitionKey": REMOVED,
                            "RowKey": f"{indicator.key}~{inverted(found.created)}",
                            "Kind": indicator.kind, **split("Value", indicator.value),
                            "Reason": _clip(found.reason), "Author": _clip(found.author),
                            "Created": found.created, "RemovedBy": _clip(author),
                            "Removed": when})
        self._delete("table", SUPPRESSED, indicator.key)
        return True

    def removals(self) -> list[dict[str, str]]:
        """Who removed which suppression, when (the audit)."""
        return [{"indicator": f"{e.get('Kind')}:{joined(e, 'Value')}",
                 "reason": str(e.get("Reason") or ""), "author": str(e.get("Author") or ""),
                 "created": str(e.get("Created") or ""),
                 "removed_by": str(e.get("RemovedBy") or ""),
                 "removed": str(e.get("Removed") or "")}
                for e, _ in self._range("table", REMOVED, "", "\uffff")]
