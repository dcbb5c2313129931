"""Graph incidents of `graph` tenants: one row per incident, its fetch cursor and its event
outbox in the tenant's partition of the Incidents table, and a cross-tenant list index.

Why one partition per tenant: a chunk of new incident versions, their events (outbox
rows) and the cursor commit in one entity-group transaction, guarded by the cursor row's
ETag. The incident rows are the version index: a version is committed (row + event) at
most once, and a worker that dies before the commit leaves nothing of its chunk.

The IncidentIndex lists every tenant's incidents newest `lastUpdateDateTime` first in
one partition (incidents are few next to alerts): row key = the version's digits
inverted + `~` + tenant + `~` + incident id, so a page is one keyset range read. The
outbox drain (shared/ingest/incident_relay.py) writes it before it sends an event: the
new version's entry put, the replaced one's deleted; a resent event writes the same again.
"""

from __future__ import annotations

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
from shared.model import Cursor
from shared.storage.errors import StateChanged
from shared.storage.paired_tables import PairedTables

CURSOR = "c"
ROW, OUTBOX = "i~", "o~"
INDEX_PARTITION = "incidents"
MAX_PER_COMMIT = 49  # two operations each (row, event) and the cursor: 99 of 100
# sizes: a row stays under ~25 KB and an event under ~20 KB, so 49 of each fit a
# transaction's 4 MiB and a string property's 32K characters
MAX_TEXT = 1_000  # per stored string (a name, an assignee, one tag or alert id)
MAX_LIST_CHARS = 8_000  # the JSON of tags, of alert ids: those that fit are kept
_INVERT = str.maketrans("0123456789", "9876543210")
_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f~]")
_TOKEN = re.compile(r"[0-9]{21}~[^~/\\#?]{1,200}~[^~/\\#?]{1,200}")


@dataclass(frozen=True)
class Incident:
    """An incident as the hub keeps it (Graph's fields, not its whole JSON)."""

    tenant_id: str
    incident_id: str
    version: str  # lastUpdateDateTime, normalized
    name: str = ""
    severity: str = ""
    status: str = ""
    assignee: str = ""
    classification: str = ""
    determination: str = ""
    tags: tuple[str, ...] = ()
    alert_ids: tuple[str, ...] = ()
    created: str = ""
    web_url: str = ""


@dataclass(frozen=True)
class Listed:
    """An incident's entry in the cross-tenant list."""

    tenant_id: str
    incident_id: str
    version: str
    name: str
    severity: str
    status: str
    key: str  # the keyset token of this entry


@dataclass
class Opening:
    """What a run reads first (`IncidentRepository.open`)."""

    cursor: Cursor | None = None
    etag: str | None = None
    recent: dict[str, str] = field(default_factory=dict)
    waiting: int = 0


@dataclass
class ListPage:
    items: list[Listed] = field(default_factory=list)
    after: str = ""  # the token of the next page ("" when there is none)


def valid_id(text: str) -> bool:
    """Whether `text` can be part of a row key (Graph's incident ids are digits)."""
    return 0 < len(text) <= 200 and not _BAD_KEY.search(text)


def inverted(version: str) -> str:
    return re.sub(r"[^0-9]", "", version).ljust(21, "0")[:21].translate(_INVERT)


def index_key(tenant_id: str, incident_id: str, version: str) -> str:
    return f"{inverted(version)}~{tenant_id}~{incident_id}"


def valid_token(text: str) -> bool:
    return bool(_TOKEN.fullmatch(text))


def _clip(text: Any) -> str:
    return text[:MAX_TEXT] if isinstance(text, str) else ""


def _entity(incident: Incident) -> dict[str, Any]:
    return {"PartitionKey": incident.tenant_id, "RowKey": ROW + incident.incident_id,
            "Version": incident.version, "Name": _clip(incident.name),
            "Severity": _clip(incident.severity), "Status": _clip(incident.status),
            "Assignee": _clip(incident.assignee),
            "Classification": _clip(incident.classification),
            "Determination": _clip(incident.determination),
            "Tags": _bounded(incident.tags), "AlertIds": _bounded(incident.alert_ids),
            "Created": _clip(incident.created), "WebUrl": _clip(incident.web_url)}


def _bounded(values: tuple[str, ...]) -> str:
    """The JSON list of as many of `values` (each clipped) as fit MAX_LIST_CHARS."""
    kept: list[str] = []
    size = 2
    for value in values:
        value = _clip(value)
        size += len(codec.dumps_text(value)) + 1
        if size > MAX_LIST_CHARS:
            break
        kept.append(value)
    return codec.dumps_text(kept)


def _strings(text: Any) -> tuple[str, ...]:
    try:
        values = codec.loads(str(text or "[]"))
    except ValueError:
        return ()
    return tuple(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()


def _incident(entity: dict[str, Any]) -> Incident:
    return Incident(
        tenant_id=entity["PartitionKey"], incident_id=entity["RowKey"][len(ROW):],
        version=entity.get("Version") or "", name=entity.get("Name") or "",
        severity=entity.get("Severity") or "", status=entity.get("Status") or "",
        assignee=entity.get("Assignee") or "",
        classification=entity.get("Classification") or "",
        determination=entity.get("Determination") or "", tags=_strings(entity.get("Tags")),
        alert_ids=_strings(entity.get("AlertIds")), created=entity.get("Created") or "",
        web_url=entity.get("WebUrl") or "")


def _cursor_entity(tenant_id: str, cursor: Cursor, recent: dict[str, str] | None
                   ) -> dict[str, Any]:
    return {"PartitionKey": tenant_id, "RowKey": CURSOR, "Watermark": cursor.watermark,
            "Link": cursor.link, "High": cursor.high, "Started": cursor.started,
            "Recent": codec.dumps_text(recent or {})}


def _recent(entity: dict[str, Any]) -> dict[str, str]:
    try:
        value = codec.loads(str(entity.get("Recent") or "{}"))
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _cursor(entity: dict[str, Any]) -> Cursor:
    return Cursor(entity.get("Watermark") or "", source="graph",
                  link=entity.get("Link") or "", high=entity.get("High") or "",
                  started=entity.get("Started") or "")


def _index_entity(incident: Incident) -> dict[str, Any]:
    return {"PartitionKey": INDEX_PARTITION,
            "RowKey": index_key(incident.tenant_id, incident.incident_id, incident.version),
            "Tenant": incident.tenant_id, "Severity": _clip(incident.severity),
            "Status": _clip(incident.status), "Name": _clip(incident.name)[:400]}


def _listed(entity: dict[str, Any]) -> Listed:
    key = entity["RowKey"]
    digits = key[:21].translate(_INVERT)
    version = (f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:"
               f"{digits[12:14]}.{digits[14:]}Z")
    tenant_id, incident_id = key[22:].split("~", 1)
    return Listed(tenant_id, incident_id, version, entity.get("Name") or "",
                  entity.get("Severity") or "", entity.get("Status") or "", key)


class IncidentRepository(PairedTables):
    """The Incidents and IncidentIndex tables."""

    # storage primitives (the memory fake overrides these) ---------------------------------
    def _range(self, table: str, pk: str, low: str, high: str, where: dict[str, tuple[str, ...]]
               | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Rows of `pk` with low < RowKey < high, in key order, matching `where`."""
        params: dict[str, Any] = {"pk": pk, "low": low, "high": high}
        clauses = ["PartitionKey eq @pk", "RowKey gt @low", "RowKey lt @high"]
        for n, (column, values) in enumerate(sorted((where or {}).items())):
            ors = []
            for m, value in enumerate(values):
                params[f"v{n}_{m}"] = value
                ors.append(f"{column} eq @v{n}_{m}")
            clauses.append("( " + " or ".join(ors) + " )")
        found = self._client(table).query_entities(
            " and ".join(clauses), parameters=params,
            results_per_page=min(limit or 1000, 1000))
        for count, entity in enumerate(found):
            if limit is not None and count >= limit:
                return
            yield dict(entity)

    def _cursor_and_outbox(self, pk: str) -> list[tuple[dict[str, Any], str]]:
        """The cursor row and the outbox rows of a partition, in one query."""
        found = self.table.query_entities(
            "PartitionKey eq @pk and ( RowKey eq @c or ( RowKey gt @lo and RowKey lt @hi ) )",
            parameters={"pk": pk, "c": CURSOR, "lo": OUTBOX, "hi": OUTBOX + "\uffff"})
        return [(dict(e), e.metadata["etag"]) for e in found]

    def _transact(self, pk: str, ops: list[tuple[str, dict[str, Any], str | None]]) -> str:
        """One transaction of ("upsert" | "create" | "update", entity, etag) on the
        Incidents table; the ETag of the last operation. StateChanged if a guard fails."""
        actions: list[Any] = []
        for kind, entity, etag in ops:
            if kind == "update":
                actions.append(("update", entity, {
                    "mode": UpdateMode.REPLACE, "etag": etag,
                    "match_condition": MatchConditions.IfNotModified}))
            elif kind == "create":
                actions.append(("create", entity))
            else:
                actions.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        try:
            results = self.table.submit_transaction(actions)
        except (TableTransactionError, ResourceExistsError) as exc:
            raise StateChanged(f"incidents of {pk}: {exc}") from None
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise StateChanged(f"incidents of {pk}: {exc}") from None
            raise
        return str(results[-1].get("etag", ""))

    def _put_index(self, entity: dict[str, Any]) -> None:
        self.index.upsert_entity(entity, mode=UpdateMode.REPLACE)

    # per tenant ---------------------------------------------------------------------------
    def cursor(self, tenant_id: str) -> tuple[Cursor | None, str | None]:
        """The tenant's incident cursor and the ETag that guards its next commit."""
        found = self._get("incidents", tenant_id, CURSOR)
        if found is None:
            return None, None
        return _cursor(found[0]), found[1]

    def open(self, tenant_id: str) -> Opening:
        """A run's one read: the cursor, its ETag, the versions it keeps of the
        incidents within the overlap before it, and how many events wait in the outbox
        (left by a run that died before draining it)."""
        opening = Opening()
        for entity, row_etag in self._cursor_and_outbox(tenant_id):
            if entity["RowKey"] == CURSOR:
                opening.cursor, opening.etag = _cursor(entity), row_etag
                opening.recent = _recent(entity)
            else:
                opening.waiting += 1
        return opening

    def stored(self, tenant_id: str, ids: Iterable[str]) -> dict[str, Incident]:
        """The stored version of each of these incidents that is stored (the version
        index: a chunk's classification reads it once)."""
        wanted = sorted(i for i in set(ids) if valid_id(i))
        out: dict[str, Incident] = {}
        for start in range(0, len(wanted), 15):  # a short OR filter per query
            group = wanted[start:start + 15]
            for entity in self._range("incidents", tenant_id, ROW, ROW + "\uffff",
                                      {"RowKey": tuple(ROW + i for i in group)}):
                incident = _incident(entity)
                out[incident.incident_id] = incident
        return out

    def commit(self, tenant_id: str, changes: list[tuple[Incident, str]], cursor: Cursor,
               etag: str | None, recent: dict[str, str] | None = None) -> str:
        """New incident versions with their events (`IncidentEvent` texts) and the cursor
        (with `recent`: incident id -> version, those within the overlap before it), all
        or nothing; the cursor's new ETag. StateChanged when the cursor moved since
        `etag` (None: no cursor yet) was read."""
        if len(changes) > MAX_PER_COMMIT:
            raise ValueError(f"at most {MAX_PER_COMMIT} incidents a commit")
        ops: list[tuple[str, dict[str, Any], str | None]] = []
        for incident, event in changes:
            if incident.tenant_id != tenant_id or not valid_id(incident.incident_id):
                raise ValueError(f"not an incident of {tenant_id}: {incident.incident_id!r}")
            ops.append(("upsert", _entity(incident), None))
            ops.append(("upsert", {"PartitionKey": tenant_id,
                                   "RowKey": f"{OUTBOX}{incident.version}~"
                                             f"{incident.incident_id}",
                                   "Event": event}, None))
        ops.append(("create" if etag is None else "update",
                    _cursor_entity(tenant_id, cursor, recent), etag))
        return self._transact(tenant_id, ops)

    def outbox(self, tenant_id: str) -> list[tuple[str, str]]:
        """The tenant's unsent events: (row key, event text), oldest version first."""
        return [(e["RowKey"], e.get("Event") or "")
                for e in self._range("incidents", tenant_id, OUTBOX, OUTBOX + "\uffff")]

    def drop_outbox(self, tenant_id: str, row_key: str) -> None:
        """An event sent: its row deleted (nothing when it already was)."""
        if not row_key.startswith(OUTBOX):
            raise ValueError("not an outbox row")
        self._delete("incidents", tenant_id, row_key)

    def store_own(self, incident: Incident, event: str, replaced: str) -> bool:
        """The MSSP's own change as Graph answered it: the incident's row at its new
        version and its event (outbox row), in one transaction, only while the stored row
        is still at `replaced` (its ETag guards the write). False, nothing written, when
        the row moved on (a fetch stored a version meanwhile) or is not stored: the next
        fetch then stores this version with its event. The cursor is not moved."""
        tenant_id = incident.tenant_id
        if not valid_id(incident.incident_id) or incident.version <= replaced:
            return False
        found = self._get("incidents", tenant_id, ROW + incident.incident_id)
        if found is None or (found[0].get("Version") or "") != replaced:
            return False
        try:
            self._transact(tenant_id, [
                ("update", _entity(incident), found[1]),
                ("upsert", {"PartitionKey": tenant_id,
                            "RowKey": f"{OUTBOX}{incident.version}~{incident.incident_id}",
                            "Event": event}, None)])
        except StateChanged:
            return False
        return True

    def get(self, tenant_id: str, incident_id: str) -> Incident | None:
        if not valid_id(incident_id) or not tenant_id or _BAD_KEY.search(tenant_id):
            return None
        found = self._get("incidents", tenant_id, ROW + incident_id)
        return _incident(found[0]) if found else None

    # the cross-tenant list ------------------------------------------------------------------
    def record_listed(self, incident: Incident, replaced: str = "") -> None:
        """The list entry of `incident` at its version, and the entry of the version it
        replaced (`replaced`, "" for a new incident) gone. Idempotent."""
        self._put_index(_index_entity(incident))
        if replaced and replaced != incident.version:
            self._delete("index", INDEX_PARTITION,
                         index_key(incident.tenant_id, incident.incident_id, replaced))

    def listed(self, *, severities: tuple[str, ...] = (), statuses: tuple[str, ...] = (),
               tenants: tuple[str, ...] = (), after: str = "", limit: int = 50) -> ListPage:
        """Newest update first, filtered, `limit` entries after the token `after`."""
        if after and not valid_token(after):
            raise ValueError("not a page token")
        where = {c: v for c, v in (("Severity", severities), ("Status", statuses),
                                   ("Tenant", tenants)) if v}
        rows = list(self._range("index", INDEX_PARTITION, after or "", "\uffff", where,
                                limit + 1))
        items = [_listed(r) for r in rows[:limit]]
        return ListPage(items, items[-1].key if len(rows) > limit else "")
