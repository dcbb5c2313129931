"""Changes the MSSP made itself (a triage action written to Defender): marked before
Defender is asked, so the fetch that meets the new version says who made it (`by` on its
event), and stored at once from Defender's answer, so the hub shows the result without
waiting for the next fetch.

`store` commits the way a fetch chunk does (alert row, then version index and outbox in
one transaction), under the tenant's lease, without moving the cursor: the next fetch
reads the same version, finds it in the index and makes no second event. A crash between
any two steps leaves either nothing for that fetch to skip (it makes the event, with
`by` from the mark) or the outbox row, which the next fetch's opening relays.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import codec, timefmt
from shared.ingest.attribution import SETTABLE, WINDOW_SECONDS
from shared.ingest.events import event_message, same, tracked
from shared.ingest.hold import IDLE_LEASE_SECONDS
from shared.ingest.schemas import SCHEMAS, MdeSchema, Schema
from shared.ingest.worker import index_day
from shared.model import TenantStatus
from shared.storage.alert_rows import alert_rows
from shared.storage.alerts import AlertRepository
from shared.storage.ingest_state import ConflictError, IngestStates
from shared.storage.own_marks import OwnMarks, marks_of
from shared.storage.queues import RelayQueue
from shared.storage.tenants import TenantRepository
from shared.triage.model import Actor, Change

log = logging.getLogger("mssp_hub.own_changes")

STORE_LEASE_SECONDS = 60  # one read, one row write and one commit
KEEP_SECONDS = 24 * 3600 + WINDOW_SECONDS  # marks kept a day past their window
PRUNE_EVERY = 3_600.0  # seconds between prunes of one tenant's marks, per process


@dataclass(frozen=True)
class Stored:
    """What `store` did. `stored`: the hub holds this version now (stored here, or found
    stored already); else `detail` says why it is left to the next fetch, which stores
    it with one event whose `by` comes from the mark. `event`: this call committed it."""

    stored: bool
    detail: str
    event: bool = False


def actor_of(actor: Actor | Mapping[str, str]) -> dict[str, str]:
    """An event's `by`: the actor's id, name and how they acted."""
    if isinstance(actor, Mapping):
        return {k: str(actor[k]) for k in ("id", "name", "via") if k in actor}
    return {"id": actor.id, "name": actor.name, "via": actor.via}


class OwnChanges:
    def __init__(self, marks: OwnMarks, states: IngestStates, alerts: AlertRepository,
                 tenants: TenantRepository, relay_queue: RelayQueue,
                 clock: Callable[[], float] = time.time) -> None:
        self.marks, self.states, self.alerts = marks, states, alerts
        self.tenants, self.relay_queue, self.clock = tenants, relay_queue, clock
        self.pruned: dict[str, float] = {}  # tenant -> when its marks were last pruned

    # before Defender is asked -----------------------------------------------------------
    def expect(self, tenant_id: str, alert_ids: Iterable[str],
               fields: Change | Mapping[str, Any], actor: Actor | Mapping[str, str]) -> None:
        """Mark that `actor` is asking Defender to set `fields` on these alerts: a Change,
        or its `body()` (Defender's names; a `comment` key means a comment is added).
        Call it before each call to Defender (a retry marks again)."""
        if isinstance(fields, Change):
            fields = fields.body()
        now = datetime.fromtimestamp(self.clock(), UTC)
        settable = {k: v for k, v in fields.items() if k in SETTABLE and v is not None}
        self.marks.add(tenant_id, marks_of(alert_ids, settable, bool(fields.get("comment")),
                                           actor_of(actor), now))
        self._prune(tenant_id, now)

    def _prune(self, tenant_id: str, now: datetime) -> None:
        last = self.pruned.get(tenant_id)
        if last is not None and self.clock() - last < PRUNE_EVERY:
            return
        self.pruned[tenant_id] = self.clock()
        try:
            self.marks.prune(tenant_id, timefmt.shift(timefmt.from_datetime(now),
                                                      -KEEP_SECONDS))
        except Exception:  # a racing prune, or storage busy: the next one catches up
            log.warning("pruning own-change marks of %s failed", tenant_id, exc_info=True)

    # with Defender's answer -------------------------------------------------------------
    def store(self, tenant_id: str, document: dict[str, Any],
              actor: Actor | Mapping[str, str], schema: str = "mde") -> Stored:
        """Store the alert as Defender answered a PATCH (`schema` "graph": as Graph
        has it after an update), with its event (`by` = actor), at once. Storage errors
        are raised: the change is then the next fetch's."""
        source = SCHEMAS[schema]
        try:
            alert_id = source.key(document) if document.get("id") else ""
            timefmt.normalize(str(document.get(source.version_field) or ""))
        except ValueError:
            alert_id = ""
        if not alert_id:
            return Stored(False, "Defender's answer has no id or lastUpdateTime")
        tenant = self.tenants.get(tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            return Stored(False, "the tenant is not fetched" if tenant is None
                          else f"the tenant is {tenant.status}")
        state = self.states.of(tenant_id)
        owner = f"own-{uuid.uuid4().hex}"
        lease = state.borrow_lease(owner, STORE_LEASE_SECONDS, IDLE_LEASE_SECONDS)
        if lease is None:
            return Stored(False, "a fetch of this tenant is storing alerts; it stores this "
                                 "change too, as yours")
        try:
            return self._store(state, tenant.tenant_id, tenant.display_name, alert_id,
                               document, actor_of(actor), source)
        finally:
            state.close(owner, lease, None)

    def _store(self, state: Any, tenant_id: str, tenant_name: str, alert_id: str,
               document: dict[str, Any], by: dict[str, str],
               source: Schema = MdeSchema) -> Stored:
        version = timefmt.normalize(document[source.version_field])
        graph = source is not MdeSchema
        day = source.day(document, version) if graph else index_day(document, version)
        index = state.load_index([day])
        old = index.get(alert_id)
        new = source.entry(document, version) if graph else tracked(document, version)
        if old is None:  # its first version is the customer's news: the fetch tells it
            return Stored(False, "the hub has not stored this alert yet; the next fetch "
                                 "stores it")
        if old[0] > version or same(old, new):
            return Stored(True, "stored already")
        alert = document if "evidence" in document else self._with_evidence(
            tenant_id, alert_id, document)
        if alert is None:
            return Stored(False, "the hub cannot add the evidence Defender's answer "
                                 "leaves out; the next fetch stores it")
        if graph:
            view = source.view(alert)  # parsed once for the row and the event
            self.alerts.store(alert_rows(tenant_id, alert, datetime.now(UTC),
                                         schema=source.name, key=alert_id, view=view))
            event = event_message(tenant_id, tenant_name, alert, version, old, new, by,
                                  alert_id=alert_id, schema=source.name, view=view)
        else:
            self.alerts.store(alert_rows(tenant_id, alert, datetime.now(UTC)))
            event = event_message(tenant_id, tenant_name, alert, version, old, new, by)
        index.put(alert_id, day, new)
        try:
            state.commit_alone(index.snapshot(), [event], stamp=version)
        except ConflictError:
            return Stored(False, "a fetch stored alerts of this day meanwhile; the next "
                                 "fetch stores this change")
        self.relay_queue.request(tenant_id)
        return Stored(True, "stored", event=True)

    def _with_evidence(self, tenant_id: str, alert_id: str, document: dict[str, Any]
                       ) -> dict[str, Any] | None:
        """Defender's PATCH answers without evidence: the stored alert's is kept (None
        when it cannot be read from the main row alone, or the alert is not stored)."""
        stored = self.alerts.get_stored(tenant_id, alert_id)
        if stored is None or stored.body_rows != 1 or not stored.body:
            return None
        previous = codec.unpack(b"".join(stored.body[k] for k in sorted(stored.body)))
        if not isinstance(previous, dict):
            return None
        return {**document, "evidence": previous.get("evidence") or []}
