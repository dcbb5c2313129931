"""A graph tenant's incidents: fetched after its alerts, by the same cursor discipline.

The chain (graph_cursor.py): `lastUpdateDateTime ge <watermark - overlap>` and its
nextLinks, the watermark moved only at the chain's end, an expired nextLink read again
from the chain's start. The incident rows are the version index: per chunk (at most
MAX_PER_COMMIT incidents) the versions not stored yet are committed with one event each
(`IncidentEvent`, in the tenant's incident outbox) and the cursor, in one transaction
guarded by the cursor's ETag (storage/incidents.py). A worker killed anywhere before that
commit leaves nothing of the chunk; the next run commits it once. The outbox is drained
after the chain (incident_relay.py). Every call is charged to the tenant's Graph budget;
an idle tenant costs one call (one page, nothing new).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import timefmt
from shared.ingest import graph_cursor
from shared.ingest.schemas import GraphSchema
from shared.messages import IncidentEvent
from shared.microsoft import alert_stream
from shared.microsoft.defender import DefenderError, Unauthorized
from shared.microsoft.graph_security import INCIDENTS_TOP, ExpiredLink, GraphSecurityClient
from shared.model import Cursor, Tenant
from shared.storage.errors import StateChanged
from shared.storage.incidents import MAX_PER_COMMIT, Incident, IncidentRepository, valid_id
from shared.storage.ingest_state import ConflictError

log = logging.getLogger("mssp_hub.ingest.incidents")

TRACKED = ("severity", "status", "assignee", "classification", "determination", "name")
EVENT_IDS = 30  # alert ids (and tags) an event carries (the row keeps more)
EVENT_TEXT = 1_000  # characters per string an event carries (ids and tags: 100)


class Budget(Protocol):
    def wait_seconds(self) -> int: ...
    def spend(self) -> None: ...


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse(tenant_id: str, doc: Any) -> Incident:
    """An incident of Graph's JSON (`$expand=alerts`), or MalformedResponse."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) \
            or not valid_id(doc["id"]) or not doc.get("lastUpdateDateTime"):
        raise DefenderError("an incident without id or lastUpdateDateTime", 200,
                            "MalformedResponse")
    try:
        version = timefmt.normalize(doc["lastUpdateDateTime"])
    except (ValueError, TypeError):
        raise DefenderError("an incident whose lastUpdateDateTime is not a time", 200,
                            "MalformedResponse") from None
    tags = [t for t in (doc.get("customTags") or []) + (doc.get("systemTags") or [])
            if isinstance(t, str)] if isinstance(doc.get("customTags") or [], list) \
        and isinstance(doc.get("systemTags") or [], list) else []
    alerts = doc.get("alerts") if isinstance(doc.get("alerts"), list) else []
    return Incident(
        tenant_id, doc["id"], version, name=_text(doc.get("displayName")),
        severity=_text(doc.get("severity")), status=_text(doc.get("status")),
        assignee=_text(doc.get("assignedTo")),
        classification=_text(doc.get("classification")),
        determination=_text(doc.get("determination")), tags=tuple(dict.fromkeys(tags)),
        # each alert under its stored key (an endpoint alert's is its Defender id)
        alert_ids=tuple(dict.fromkeys(GraphSchema.key(a) for a in alerts
                                      if isinstance(a, dict) and isinstance(a.get("id"), str))),
        created=_text(doc.get("createdDateTime")), web_url=_text(doc.get("incidentWebUrl")))


def summary(incident: Incident) -> dict[str, Any]:
    """What an event carries of an incident (bounded: it must fit a queue message)."""
    return {"name": incident.name[:EVENT_TEXT], "severity": incident.severity[:100],
            "status": incident.status[:100], "assignee": incident.assignee[:EVENT_TEXT],
            "classification": incident.classification[:100],
            "determination": incident.determination[:100],
            "tags": [t[:100] for t in incident.tags[:EVENT_IDS]],
            "alertIds": [a[:100] for a in incident.alert_ids[:EVENT_IDS]],
            "alertCount": len(incident.alert_ids),
            "createdDateTime": incident.created[:100],
            "lastUpdateDateTime": incident.version, "webUrl": incident.web_url[:EVENT_TEXT]}


def event_of(tenant: Tenant, incident: Incident, old: Incident | None) -> IncidentEvent:
    changed: dict[str, list[Any]] = {}
    if old is not None:
        for name in TRACKED:
            before, after = getattr(old, name), getattr(incident, name)
            if before != after:
                changed[name] = [before[:EVENT_TEXT], after[:EVENT_TEXT]]
    return IncidentEvent(tenant.tenant_id, tenant.display_name, incident.incident_id,
                         incident.version, "new" if old is None else "updated", changed,
                         summary(incident), previous=old.version if old else "")


class Known:
    """Committed incident versions within the overlap: the cursor row's and this run's."""

    LIMIT = 1_000  # kept in the cursor row (a string property holds 64 KiB)

    def __init__(self, recent: dict[str, str]) -> None:
        self.recent = recent
        self.seen: dict[str, str] = {}

    def get(self, incident_id: str) -> str | None:
        return self.seen.get(incident_id) or self.recent.get(incident_id)

    def at(self, cursor: Cursor, overlap: int) -> dict[str, str]:
        """What the cursor row keeps with `cursor` ({} when too many to keep)."""
        floor = timefmt.shift(cursor.watermark, -overlap) if overlap else cursor.watermark
        kept = {k: v for k, v in {**self.recent, **self.seen}.items() if v >= floor}
        return kept if len(kept) <= self.LIMIT else {}


class IncidentFetch:
    """One tenant's incident chain within a run of the worker."""

    def __init__(self, incidents: IncidentRepository, lookback_days: int, overlap: int,
                 max_pages: int) -> None:
        self.incidents = incidents
        self.lookback_days, self.overlap, self.max_pages = lookback_days, overlap, max_pages

    def run(self, graph: GraphSecurityClient, tenant: Tenant, token: Callable[[bool], str],
            budget: Budget, counts: dict[str, int], before_write: Callable[[], None]
            ) -> bool:
        """Read the chain (or the rest of it); True when it ended, False when the budget
        or the page limit stopped it (its place committed). `token(fresh)`; `counts`
        gets calls, pages, new, changed, unchanged and `waiting` (events in the outbox
        to drain: committed now or left by a dead run); `before_write` runs before each
        commit (the worker's lease check)."""
        tid = tenant.tenant_id
        opening = self.incidents.open(tid)
        committed, etag = opening.cursor, opening.etag
        counts["waiting"] = counts.get("waiting", 0) + opening.waiting
        now = timefmt.from_datetime(datetime.now(UTC))
        position = graph_cursor.start(committed, now, self.lookback_days, self.overlap)
        access = token(False)
        retried = False
        pages = 0
        # committed versions within the overlap before the cursor: the cursor row's, and
        # this run's (stored or found stored); an idle re-read is classified on them alone
        known = Known(opening.recent)

        def commit(changes: list[tuple[Incident, str]], cursor: Cursor) -> None:
            nonlocal etag, committed
            before_write()
            for incident, _ in changes:
                known.seen[incident.incident_id] = incident.version
            try:
                etag = self.incidents.commit(tid, changes, cursor, etag,
                                             known.at(cursor, self.overlap))
            except StateChanged as exc:
                raise ConflictError(f"incidents of {tid}: another run moved on") from exc
            committed = cursor

        while True:
            if pages >= self.max_pages or budget.wait_seconds():
                if position != committed:
                    commit([], position)
                return False
            budget.spend()
            counts["calls"] = counts.get("calls", 0) + 1
            try:
                with graph.incidents(access, since=graph_cursor.since(
                        position, self.overlap), top=INCIDENTS_TOP,
                        link=position.link) as page:
                    pages += 1
                    counts["pages"] = counts.get("pages", 0) + 1
                    for chunk in _chunks(tid, page.documents):
                        position = self._store(tenant, chunk, position, known, commit,
                                               counts)
            except Unauthorized:
                if retried:
                    raise
                retried, access = True, token(True)
                continue
            except ExpiredLink:
                log.warning("tenant %s: Graph's incidents nextLink expired; the chain is "
                            "read again from %s", tid, position.watermark)
                position = graph_cursor.restarted(position)
                continue
            if page.next_link:
                position = graph_cursor.at_link(position, page.next_link)
                commit([], position)  # a killed run resumes at this page
                continue
            ended = graph_cursor.ended(position)
            if ended != committed or known.at(ended, self.overlap) != opening.recent:
                commit([], ended)
            return True

    def _store(self, tenant: Tenant, chunk: list[Incident], position: Cursor,
               known: Known, commit: Callable[[list[tuple[Incident, str]], Cursor], None],
               counts: dict[str, int]) -> Cursor:
        """Classify a chunk against the stored rows (not read when `known` has every
        incident of it at its version); commit its new versions with their events and the
        chain's place (the page being read: a kill re-reads it)."""
        high = max([position.high, *(i.version for i in chunk)])
        position = replace(position, high=high)
        if all(known.get(i.incident_id) == i.version for i in chunk):
            counts["unchanged"] = counts.get("unchanged", 0) + len(chunk)
            known.seen.update((i.incident_id, i.version) for i in chunk)
            return position
        stored = self.incidents.stored(tenant.tenant_id, [i.incident_id for i in chunk])
        known.seen.update((k, v.version) for k, v in stored.items())
        changes: list[tuple[Incident, str]] = []
        latest: dict[str, Incident] = {}
        for incident in chunk:  # a page may hold one incident twice: its latest counts
            had = latest.get(incident.incident_id)
            if had is None or had.version < incident.version:
                latest[incident.incident_id] = incident
        for incident in latest.values():
            old = stored.get(incident.incident_id)
            if old is not None and old.version >= incident.version:
                counts["unchanged"] = counts.get("unchanged", 0) + 1
                continue
            counts["new" if old is None else "changed"] = counts.get(
                "new" if old is None else "changed", 0) + 1
            changes.append((incident, event_of(tenant, incident, old).to_message()))
        if changes:
            commit(changes, position)
            counts["waiting"] = counts.get("waiting", 0) + len(changes)
        return position


def _chunks(tenant_id: str, documents: Iterator[alert_stream.Document]
            ) -> Iterator[list[Incident]]:
    chunk: list[Incident] = []
    for doc, _ in documents:
        chunk.append(parse(tenant_id, doc))
        if len(chunk) >= MAX_PER_COMMIT:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
