"""The SIEM feed table: entries in hourly partitions keyed by the time they were written
(microseconds), a ledger row per event id (when its entry was first stamped), and the
prune mark. Each entry has a copy in its tenant's view of that hour (partition
"<hour>|<tenant id>", same RowKey), so a pull filtered to one tenant reads only that
tenant's entries with the same positions; the copy is written before the entry and
dropped with it, so an entry in the feed is always in its tenant's view. How entries
are keyed, shaped and filtered lives here; when to stamp and restamp is the feed's
business (shared/siem/feed.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import codec, timefmt
from shared.messages import AlertEvent, ClusterEvent, IncidentEvent
from shared.siem.feed_model import Filters, bucket_of
from shared.storage import batch, limits
from shared.storage.keys import encode_key

META = "meta"  # PartitionKey of the prune mark
VERSION_START = re.compile(r"\d{4}-\d\d-\d\dT")
# what the feed holds: alert versions, (graph tenants') incident versions and cross-tenant
# cluster versions, each its type
FeedEvent = AlertEvent | IncidentEvent | ClusterEvent
# the Tenant column of a cluster's entry: no tenant's, so a read filtered to tenants (a
# tenant-scoped output, a pull with `tenant`) never sees one (a cluster names customers)
MSSP_ONLY = "*"


@dataclass(frozen=True)
class LedgerStamp:
    """When an event's entry was stamped by an earlier delivery, and the row's ETag."""

    stamp: int
    etag: str


def tenant_of(event: FeedEvent) -> str:
    """The entry's Tenant: the event's tenant, MSSP_ONLY for a cluster."""
    return MSSP_ONLY if isinstance(event, ClusterEvent) else event.tenant_id


def _day(event: FeedEvent) -> str:
    """The day of the version (a cluster's: of its last sighting)."""
    when = event.last_seen if isinstance(event, ClusterEvent) else event.version
    return when[:10].replace("-", "")


def _normal(when: str) -> str:
    """As alerts' LastUpdateTime is written, so `since` and `until` compare alike."""
    try:
        return timefmt.normalize(when)
    except ValueError:
        return when


def ledger_key(event: FeedEvent) -> tuple[str, str]:
    """(PartitionKey, RowKey) of an event's ledger row: one partition per day of versions."""
    return "L" + _day(event), encode_key(event.event_id)


def ledger_day(event: FeedEvent) -> str:
    """The ledger partition of an event (events of one day go in one transaction)."""
    return ledger_key(event)[0]


def entry_key(event: FeedEvent, stamp: int) -> str:
    return f"{stamp:016d}|{encode_key(event.event_id)}"


def _schema(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of the alert an entry copies (whose names it is in), from its summary;
    nothing for an mde alert (its entries stay as they were; a reader's default)."""
    schema = summary.get("schema")
    return {"schema": schema} if schema and schema != "mde" else {}


def entry_entity(event: FeedEvent, stamp: int,
                 raw: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """The entry: filterable columns, the event, and the stored alert (else its summary);
    an incident's entry keeps the incident as its summary, a cluster's is its event (its
    Severity the highest of its alerts', no Status, no tenant's)."""
    if isinstance(event, ClusterEvent):
        return {"PartitionKey": bucket_of(stamp), "RowKey": entry_key(event, stamp),
                "Tenant": MSSP_ONLY, "LastUpdateTime": _normal(event.last_seen),
                "Severity": event.highest_severity or "", "Status": "",
                "Event": codec.pack(event.dump())}
    if isinstance(event, IncidentEvent):
        return {"PartitionKey": bucket_of(stamp), "RowKey": entry_key(event, stamp),
                "Tenant": event.tenant_id, "LastUpdateTime": event.version,
                # as the pull API's severity filter spells it (Defender's: "High")
                "Severity": str(event.incident.get("severity") or "").capitalize(),
                "Status": str(event.incident.get("status") or ""),
                "Event": codec.pack({k: v for k, v in event.dump().items()
                                     if k != "incident"}),
                "Summary": codec.pack(event.incident)}
    alert = event.alert
    entity: dict[str, Any] = {
        "PartitionKey": bucket_of(stamp), "RowKey": entry_key(event, stamp),
        "Tenant": event.tenant_id, "LastUpdateTime": event.version,
        "Severity": str(alert.get("severity") or ""), "Status": str(alert.get("status") or ""),
        "Event": codec.pack({**{k: v for k, v in event.dump().items() if k != "alert"},
                             **_schema(alert)})}
    if raw:
        entity.update(raw)
    else:
        entity["Summary"] = codec.pack(alert)
    return entity


def view_of(bucket: str, tenant_id: str) -> str:
    """The PartitionKey of a tenant's view of an hour: sorts right after the hour's own."""
    return f"{bucket}|{tenant_id}"


def view_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The copy of a feed entry in its tenant's view."""
    return {**entity, "PartitionKey": view_of(entity["PartitionKey"], entity["Tenant"])}


def one_tenant(filters: Filters) -> tuple[str | None, Filters]:
    """(the tenant, the other filters) when `filters` name exactly one tenant: read its view."""
    if len(filters.tenants) != 1:
        return None, filters
    return filters.tenants[0], dataclasses.replace(filters, tenants=())


def decode(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A feed entry as an event: the stored Defender alert when it was copied, else the summary."""
    event = codec.unpack(bytes(entity["Event"]))
    chunks = sorted(k for k in entity if k.startswith("Body") and k[4:].isdigit())
    if event.get("type") == IncidentEvent.TYPE:
        event["incident"] = codec.unpack(bytes(entity["Summary"]))
    elif event.get("type") == ClusterEvent.TYPE:
        pass  # the event is the whole cluster version
    elif chunks:
        event["alert"] = codec.unpack(b"".join(bytes(entity[k]) for k in chunks))
        event["alert_complete"] = True
    else:
        event["alert"] = codec.unpack(bytes(entity["Summary"]))
        event["alert_complete"] = False
    micros = int(str(entity["RowKey"]).split("|", 1)[0])
    event["feed_time"] = datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace(
        "+00:00", "Z")
    return event


def decode_brief(entity: Mapping[str, Any]) -> dict[str, Any]:
    """A feed entry's event without the alert (what changed, when it was written)."""
    event = codec.unpack(bytes(entity["Event"]))
    micros = int(str(entity["RowKey"]).split("|", 1)[0])
    event["feed_time"] = datetime.fromtimestamp(micros / 1e6, UTC).isoformat().replace(
        "+00:00", "Z")
    return event


def alert_prefix(tenant_id: str, alert_id: str) -> tuple[str, str]:
    """The ledger row keys of one alert's events lie in [lo, hi): an event id is
    "<tenant>:<alert>:<version>" and encode_key escapes character by character."""
    lo = encode_key(f"{tenant_id}:{alert_id}:")
    return lo, lo[:-1] + ";"  # ";" follows ":"


def of_this_alert(row_key: str, lo: str) -> bool:
    """A ledger row key in [lo, hi) that is this alert's, not one of an alert whose id
    only starts with it and a colon ("a" and "a:b"): a version follows the prefix."""
    return VERSION_START.match(row_key, len(lo)) is not None


BRIEF_COLUMNS = ["PartitionKey", "RowKey", "Event", "LastUpdateTime", "Status", "Severity"]


def odata(filters: Filters) -> tuple[str, dict[str, Any]]:
    """The filters as an OData clause and its parameters ("" when none)."""
    clauses, params = [], {}
    for prop, values, tag in (("Tenant", filters.tenants, "t"),
                              ("Severity", filters.severities, "s"),
                              ("Status", filters.statuses, "x")):
        if values:
            names = [f"{tag}{n}" for n in range(len(values))]
            params.update(zip(names, values, strict=True))
            # spaces around the brackets: the SDK finds @names by splitting on spaces
            clauses.append("( " + " or ".join(f"{prop} eq @{n}" for n in names) + " )")
    if filters.since:
        clauses.append("LastUpdateTime ge @since")
        params["since"] = filters.since
    if filters.until:
        clauses.append("LastUpdateTime le @until")
        params["until"] = filters.until
    return " and ".join(clauses), params


class SiemFeedRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    # the ledger ---------------------------------------------------------------------------
    def stamp_once(self, event: FeedEvent, stamp: int) -> LedgerStamp | None:
        """Record `stamp` as when the event's entry is written; None when this call
        recorded it, else the stamp an earlier delivery recorded."""
        pk, rk = ledger_key(event)
        try:
            self.client.create_entity({"PartitionKey": pk, "RowKey": rk, "Stamp": str(stamp)})
            return None
        except ResourceExistsError:
            ledger = self.client.get_entity(pk, rk)
        return LedgerStamp(int(ledger["Stamp"]), ledger.metadata["etag"])

    def stamp_all(self, events: Sequence[FeedEvent], stamp: int) -> bool:
        """`stamp_once` for several events of one ledger partition (at most 100) in one
        transaction: True when this call recorded them all, False (nothing recorded) when
        any of them was stamped before (a redelivery: take them one at a time)."""
        ops = []
        for event in events:
            pk, rk = ledger_key(event)
            ops.append(("create", {"PartitionKey": pk, "RowKey": rk, "Stamp": str(stamp)}))
        try:
            batch.submit_transaction(self.client, ops)
        except TableTransactionError as exc:
            if exc.status_code == 409:
                return False
            raise
        return True

    def restamp(self, event: FeedEvent, stamp: int, etag: str) -> bool:
        """Take over an abandoned stamp; False when another delivery changed it first."""
        pk, rk = ledger_key(event)
        try:
            self.client.update_entity({"PartitionKey": pk, "RowKey": rk, "Stamp": str(stamp)},
                                      mode=UpdateMode.MERGE, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return False
            raise
        return True

    def set_stamp(self, event: FeedEvent, stamp: int) -> None:
        """The entry was rewritten under a later stamp (the first write was too slow)."""
        pk, rk = ledger_key(event)
        self.client.upsert_entity({"PartitionKey": pk, "RowKey": rk, "Stamp": str(stamp)},
                                  mode=UpdateMode.MERGE)

    # entries ------------------------------------------------------------------------------
    def has_entry(self, event: FeedEvent, stamp: int) -> bool:
        try:
            self.client.get_entity(bucket_of(stamp), entry_key(event, stamp), select=["RowKey"])
            return True
        except ResourceNotFoundError:
            return False

    def put_entry(self, event: FeedEvent, stamp: int,
                  raw: Mapping[str, bytes] | None = None) -> None:
        """Write (or rewrite, the same) the event's entry under `stamp`: its tenant's view
        first, so that whenever the entry is there, so is its copy."""
        entity = entry_entity(event, stamp, raw)
        self.client.upsert_entity(view_entity(entity), mode=UpdateMode.REPLACE)
        self.client.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def put_entries(self, items: Sequence[tuple[FeedEvent, Mapping[str, bytes] | None]],
                    stamp: int) -> None:
        """`put_entry` for several events under one `stamp` (one partition), as few
        transactions as Azure's limits allow: the tenants' views first, as `put_entry`."""
        entities = [entry_entity(event, stamp, raw) for event, raw in items]
        views: dict[str, list[dict[str, Any]]] = {}
        for entity in entities:
            view = view_entity(entity)
            views.setdefault(view["PartitionKey"], []).append(view)
        for rows in [*views.values(), entities]:
            ops = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows]
            for step in limits.packed(([op] for op in ops),
                                      lambda op: limits.wire_size(op[1])):
                batch.submit_transaction(self.client, step)

    def drop_entry(self, event: FeedEvent, stamp: int) -> None:
        """The entry first, then its copy (a copy left alone is dropped again later)."""
        bucket, key = bucket_of(stamp), entry_key(event, stamp)
        for pk in (bucket, view_of(bucket, tenant_of(event))):
            with contextlib.suppress(ResourceNotFoundError):
                self.client.delete_entity(pk, key)

    def entries(self, bucket: str, after: str, before: str | None, filters: Filters,
                page_size: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, event) of the bucket's entries keyed after `after` (and before `before`),
        in key order, that pass `filters`; fetched `page_size` at a time. Filtered to one
        tenant, from that tenant's view of the hour: only its entries are read."""
        tenant, filters = one_tenant(filters)
        extra, params = odata(filters)
        query = "PartitionKey eq @pk and RowKey gt @lo"
        args = {**params, "pk": view_of(bucket, tenant) if tenant else bucket, "lo": after}
        if before is not None:
            query += " and RowKey lt @hi"
            args["hi"] = before
        if extra:
            query += " and " + extra
        for entity in self.client.query_entities(query, parameters=args,
                                                 results_per_page=page_size):
            yield entity["RowKey"], decode(entity)

    def of_alert(self, tenant_id: str, alert_id: str, days: Sequence[str], limit: int
                 ) -> list[dict[str, Any]]:
        """The entries of one alert's versions (events without the alert body), newest
        version first, at most `limit`: one range query on the ledger per day of versions
        in `days` (YYYYMMDD), then a point read of each entry the ledger points to (an
        entry still being written is left out)."""
        lo, hi = alert_prefix(tenant_id, alert_id)
        found: list[tuple[str, int]] = []
        for day in sorted(days, reverse=True):
            rows = self.client.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": "L" + day, "lo": lo, "hi": hi},
                select=["RowKey", "Stamp"])
            found += sorted(((r["RowKey"], int(r["Stamp"])) for r in rows
                             if of_this_alert(r["RowKey"], lo)), reverse=True)
            if len(found) >= limit:
                break
        briefs = []
        for key, stamp in found[:limit]:
            try:
                entity = self.client.get_entity(bucket_of(stamp), f"{stamp:016d}|{key}",
                                                select=BRIEF_COLUMNS)
            except ResourceNotFoundError:
                continue
            briefs.append(decode_brief(entity))
        return briefs

    # retention ----------------------------------------------------------------------------
    def pruned_through(self) -> str | None:
        """The last hour a prune finished with, None before the first prune."""
        try:
            return str(self.client.get_entity(META, "prune")["Through"])
        except ResourceNotFoundError:
            return None

    def mark_pruned(self, through: str) -> None:
        self.client.upsert_entity({"PartitionKey": META, "RowKey": "prune", "Through": through})

    def drop_hour(self, bucket: str) -> int:
        """Delete the hour's entries, then every tenant's view of it; returns how many
        entries (not counting their copies)."""
        deleted = self._delete_partition(bucket)
        views = {e["PartitionKey"] for e in self.client.query_entities(
            "PartitionKey gt @lo and PartitionKey lt @hi",
            parameters={"lo": f"{bucket}|", "hi": f"{bucket}}}"}, select=["PartitionKey"])}
        for pk in sorted(views):
            self._delete_partition(pk)
        return deleted

    def copy_hour_to_views(self, bucket: str) -> int:
        """Backfill: the hour's entries copied into their tenants' views (an entry written
        before views existed has none); idempotent. Returns the entries copied."""
        by_view: dict[str, list[dict[str, Any]]] = {}
        for entity in self.client.query_entities("PartitionKey eq @pk",
                                                 parameters={"pk": bucket}):
            copy = view_entity(entity)
            by_view.setdefault(copy["PartitionKey"], []).append(copy)
        for rows in by_view.values():
            for ops in limits.packed(([("upsert", r, {"mode": UpdateMode.REPLACE})]
                                      for r in rows), lambda op: limits.wire_size(op[1])):
                batch.submit_transaction(self.client, ops)
        return sum(len(rows) for rows in by_view.values())

    def drop_ledger_day(self, day: str) -> int:
        """Delete the ledger rows of a day (YYYYMMDD) of versions; returns how many."""
        return self._delete_partition("L" + day)

    def _delete_partition(self, pk: str) -> int:
        keys = [e["RowKey"] for e in self.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"])]
        for i in range(0, len(keys), 100):
            self.client.submit_transaction(
                [("delete", {"PartitionKey": pk, "RowKey": k}) for k in keys[i:i + 100]])
        return len(keys)
