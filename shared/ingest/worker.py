"""Fetch -> store -> events -> cursor for one tenant: the exactly-once core.

Per chunk of a page (at most CHUNK_ALERTS alerts): classify each alert against the
version index (new, changed or unchanged), upsert the rows of new and changed alerts
(idempotent), then commit index, outbox and cursor in one transaction. A worker that
dies before the commit leaves the cursor where it was: the next run stores the same rows
again (no harm) and produces the events once, at its commit. Events leave the outbox
through the relay, not from here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import timefmt
from shared.alerts.view import AlertView
from shared.config import Settings
from shared.ingest import gc_pause, graph_cursor
from shared.ingest.attribution import changed_by, span
from shared.ingest.chunk_commits import ChunkCommits
from shared.ingest.events import TRACKED, changes, event_message, same
from shared.ingest.hold import (
    IDLE_LEASE_SECONDS,
    RunHold,
    SourceChanged,
    TenantLeft,
    seen_tenant,
)
from shared.ingest.incident_fetch import IncidentFetch
from shared.ingest.incident_relay import IncidentRelay
from shared.ingest.page_sources import GraphPages, MdePages, PageSource
from shared.ingest.schemas import GraphSchema, MdeSchema, Schema, advance, later
from shared.logsafe import clean
from shared.messages import FetchRequest
from shared.microsoft import alert_stream
from shared.microsoft.defender import (
    DefenderClient,
    DefenderError,
    Forbidden,
    Throttled,
    Unauthorized,
)
from shared.microsoft.graph_security import (
    ExpiredLink,
    GraphConsentMissing,
    GraphSecurityClient,
)
from shared.microsoft.identity import TokenError, Tokens
from shared.model import Cursor, Tenant, TenantStatus
from shared.storage.alert_rows import alert_rows, transactions
from shared.storage.alerts import AlertRepository
from shared.storage.app_health import AppHealth
from shared.storage.incidents import IncidentRepository
from shared.storage.ingest_state import (
    ConflictError,
    Index,
    IndexEntry,
    IngestStates,
    Opening,
)
from shared.storage.own_marks import Mark, OwnMarks
from shared.storage.queues import FetchQueue, RelayQueue
from shared.storage.runs import RunHistory, RunRecord
from shared.storage.tenants import TenantRepository
from shared.tenants.ops_notices import OpsNotices

log = logging.getLogger("mssp_hub.ingest")

CHUNK_ALERTS = 1_000
FIRST_CHUNK_ALERTS = 125  # a page's first chunk; then doubled, up to CHUNK_ALERTS
CHUNK_DAYS = 90  # index shards per commit, of 100 operations
PENDING_SECONDS = 900  # a queued fetch blocks re-enqueueing this long (fan-out)
# our own ceiling under Defender's 100/minute and 1,500/hour per app per tenant
BUDGET_PER_MINUTE, BUDGET_PER_HOUR = 90, 1_400
WRITERS = 4  # concurrent alert-row transactions per worker
RELAY_EVERY = 10.0  # seconds: a run asks the relay for its events at most this often
IDLE_RUN_EVERY = 3_600.0  # seconds: an idle run is kept in the run history this often


@dataclass
class Progress:
    """Where one run is: its query position, the latest cursor handed to a commit, the
    version index of the days it has met, and its commits in flight; and what it knows of
    the versions committed within the overlap before the cursor (`known`, from the cursor
    row, and `seen`, this run's), kept in the cursor row for the next run."""

    position: Cursor
    committed: Cursor | None
    index: Index
    commits: ChunkCommits
    hold: RunHold
    overlap: int  # seconds
    known: dict[str, IndexEntry] | None  # None: not known
    covers: bool  # `seen` holds every version since the run's start, the overlap included
    seen: dict[str, IndexEntry] = field(default_factory=dict)
    schema: Schema = MdeSchema  # the source's: keys, versions, entries, cursor moves

    def recent_at(self, cursor: Cursor) -> dict[str, IndexEntry] | None:
        """What the cursor row keeps with `cursor`: every version committed within the
        overlap before it (None when this run cannot tell them all)."""
        if not self.overlap:
            return None
        base = {} if self.covers else self.known
        if base is None:
            return None
        floor = timefmt.shift(cursor.watermark, -self.overlap)
        self.seen = {k: v for k, v in self.seen.items() if v[0] >= floor}
        return {**{k: v for k, v in base.items() if v[0] >= floor}, **self.seen}


# an alert of a chunk: its version, its index day, the alert, the JSON it came as (None
# where the stream did not cut it out whole), and its view (a Graph alert's, parsed once
# for its entry, row and event; None for mde's, canonical already)
Item = tuple[str, str, dict[str, Any], bytes | None, AlertView | None]


def _version(item: Item) -> str:
    return item[0]


def index_day(alert: dict[str, Any], version: str) -> str:
    """The index day of an alert: its creation day (UTC), else its version's."""
    return MdeSchema.day(alert, version)


def _own(marks: list[Mark] | None, version: str, old: IndexEntry, new: IndexEntry
         ) -> dict[str, str] | None:
    """`by` of an update: the actor whose marks account for it (attribution.py)."""
    if not marks:
        return None
    return changed_by(marks, version, changes(old, new),
                      dict(zip(TRACKED[1:], new[1:len(TRACKED)], strict=True)))


__all__ = ["IngestStores", "Ingestor", "advance", "index_day", "later"]


class Budget:
    """Defender calls per minute for the last hour, persisted per tenant. `prepaid`: calls
    counted (and saved) ahead, which the run makes without counting them again."""

    def __init__(self, minutes: dict[int, int], now: Callable[[], float], prepaid: int = 0
                 ) -> None:
        self.now, self.prepaid = now, prepaid
        current = int(now() // 60)
        self.minutes = {m: c for m, c in minutes.items() if m > current - 60}

    def wait_seconds(self) -> int:
        if self.prepaid:
            return 0
        current = int(self.now() // 60)
        if self.minutes.get(current, 0) >= BUDGET_PER_MINUTE:
            return 60 - int(self.now() % 60) + 1
        if sum(self.minutes.values()) >= BUDGET_PER_HOUR:
            oldest = min(self.minutes)
            return (oldest + 60) * 60 - int(self.now()) + 1
        return 0

    def spend(self) -> None:
        if self.prepaid:
            self.prepaid -= 1
            return
        current = int(self.now() // 60)
        self.minutes[current] = self.minutes.get(current, 0) + 1


class RelayTrigger:
    """Asks the relay for a tenant's outbox: at a run's first commit with events, then at
    most every RELAY_EVERY seconds, and once after its last commit (`flush`).

    The relay sends every outbox row it finds, so one message covers the commits before
    it; a message per commit (eight for a page of 5,000 alerts) was work for the worker,
    storage and the relay that found nothing left to send. Rows committed after the last
    message of a run that died are found by the tenant's next run (`_relay_leftovers`).
    """

    def __init__(self, send: Callable[[], None], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.send, self.clock = send, clock
        self.last: float | None = None
        self.owed = False

    def __call__(self, outbox: list[str]) -> None:
        """After a commit that wrote `outbox` rows (on the commit thread)."""
        now = self.clock()
        if self.last is not None and now - self.last < RELAY_EVERY:
            self.owed = True
            return
        self.send()
        self.last, self.owed = now, False

    def flush(self) -> None:
        """After the run's commits are settled: the message the last ones are owed."""
        if self.owed:
            self.send()
            self.owed = False


@dataclass
class IngestStores:
    """What a fetch reads and writes, built by the wiring (`shared/services.py`)."""

    tenants: TenantRepository
    alerts: AlertRepository
    states: IngestStates
    runs: RunHistory
    app_health: AppHealth
    fetch_queue: FetchQueue
    relay_queue: RelayQueue
    notices: OpsNotices
    # what the MSSP asked Defender to set (shared/ingest/own_changes.py): an update that
    # is exactly that carries `by`; None: not consulted
    own_marks: OwnMarks | None = None
    # graph tenants' incidents (shared/ingest/incident_fetch.py) and their outbox's drain;
    # None: incidents are not fetched
    incidents: IncidentRepository | None = None
    incident_relay: IncidentRelay | None = None


class Ingestor:
    """Runs fetches; built once per process (credentials and sessions are reused)."""

    def __init__(self, settings: Settings, tokens: Tokens, client: DefenderClient,
                 stores: IngestStores, clock: Callable[[], float] = time.time,
                 triage_tokens: Tokens | None = None,
                 graph: GraphSecurityClient | None = None) -> None:
        """`triage_tokens`: the triage app's, for tenants that consented to it; `graph`:
        Microsoft Graph's alerts_v2, for tenants whose source is graph."""
        self.settings, self.tokens, self.client, self.clock = settings, tokens, client, clock
        self.graph = graph
        self.triage_tokens = triage_tokens
        self.tenants, self.alerts, self.states = stores.tenants, stores.alerts, stores.states
        self.runs, self.app_health = stores.runs, stores.app_health
        self.fetch_queue, self.relay_queue = stores.fetch_queue, stores.relay_queue
        self.notices = stores.notices
        self.own_marks = stores.own_marks
        self.incident_fetch = IncidentFetch(
            stores.incidents, settings.fetch.initial_lookback_days,
            settings.fetch.overlap_seconds, settings.fetch.max_pages_per_run
        ) if stores.incidents is not None else None
        self.incident_relay = stores.incident_relay
        self.writers = ThreadPoolExecutor(WRITERS, thread_name_prefix="alert-writer")
        self.committer = ThreadPoolExecutor(1, thread_name_prefix="chunk-commit")
        self.idle_recorded: dict[str, float] = {}  # tenant -> when an idle run was recorded
        # the lease's owner: this process, so that its next run of a tenant takes over the
        # lease an idle run left to lapse; its runs of one tenant go one at a time (running)
        self.owner = f"worker-{uuid.uuid4().hex}"
        self.running: set[str] = set()
        self.running_lock = threading.Lock()

    # the run ----------------------------------------------------------------------------
    def run(self, request: FetchRequest) -> RunRecord:
        with gc_pause.paused():
            return self._run(request)

    def _run(self, request: FetchRequest) -> RunRecord:
        record = RunRecord(request.tenant_id, uuid.uuid4().hex, datetime.now(UTC))
        with self.running_lock:
            mine = request.tenant_id not in self.running
            self.running.add(request.tenant_id)
        if not mine:  # another run of this process has it (the lease is the process's)
            record.outcome = "busy"
            if request.continuation:
                self._requeue(request.tenant_id, request, IDLE_LEASE_SECONDS)
            return record
        try:
            return self._run_leased(request, record)
        finally:
            with self.running_lock:
                self.running.discard(request.tenant_id)

    def _charge(self, minutes: dict[int, int]) -> dict[int, int] | None:
        """The budget with the run's first call counted, if it may make one now."""
        budget = Budget(minutes, self.clock)
        if budget.wait_seconds():
            return None
        budget.spend()
        return budget.minutes

    def _run_leased(self, request: FetchRequest, record: RunRecord) -> RunRecord:
        state = self.states.of(request.tenant_id)
        # lease, cursor, budget and outbox in one read, then the lease taken with the first
        # call counted (one write); the tenant as the fan-out saw it, else read once the
        # lease is held (paused or offboarded meanwhile: not fetched)
        opening = state.open(self.owner, IDLE_LEASE_SECONDS, self._charge)
        seen = seen_tenant(request)
        tenant = seen or self.tenants.get(request.tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            if opening.held:
                state.close(self.owner, opening.lease_etag, None)
            record.outcome = "skipped"
            record.error = "unknown tenant" if tenant is None else f"tenant is {tenant.status}"
            return record
        if not opening.held:
            record.outcome = "busy"
            if request.continuation and opening.until:
                self._requeue(tenant.tenant_id, request,
                              int((opening.until - datetime.now(UTC)).total_seconds()))
            return record
        hold = RunHold(state, self.owner, opening.lease_etag, tenant, seen is None,
                       self.tenants)
        budget = Budget(opening.minutes, self.clock, prepaid=int(opening.charged))
        spent = dict(budget.minutes)
        failure: BaseException | None = None
        try:
            if opening.outbox:  # an outbox row whose relay message was lost (a crash)
                self.relay_queue.request(tenant.tenant_id)
            self._fetch(hold, request, record, opening, budget)
        except Exception as exc:
            failure = self._failed(exc, hold, request, record)
        finally:
            if record.outcome != "success" or hold.extended or budget.minutes != spent:
                # the lease released and the calls counted, in one transaction
                state.close(self.owner, hold.lease_etag,
                            budget.minutes if budget.minutes != spent else None)
            # else: idle; its one call was counted with the lease, which lapses by itself
            record.duration_ms = int(
                (datetime.now(UTC) - record.started).total_seconds() * 1000)
            if self._worth_recording(record):
                self.runs.record(record)
                self.runs.prune(tenant.tenant_id, self.settings.fetch.run_history_days)
            log.info("fetch tenant=%s outcome=%s new=%d changed=%d unchanged=%d calls=%d",
                     tenant.tenant_id, record.outcome, record.new, record.changed,
                     record.unchanged, record.api_calls)
        if failure is not None:
            raise failure
        return record

    def _failed(self, exc: Exception, hold: RunHold, request: FetchRequest,
                record: RunRecord) -> BaseException | None:
        """What a run that raised `exc` records; the error to raise again (retried
        through the queue) or None. A tenant no longer active is left as it is."""
        if isinstance(exc, ConflictError):
            record.outcome, record.error = "conflict", str(exc)
            return None
        used = hold.tenant.consent_app  # the app whose token this run took
        used_graph = hold.tenant.source == "graph"
        tenant = hold.current()
        if isinstance(exc, TenantLeft) or tenant is None \
                or tenant.status != TenantStatus.ACTIVE:
            record.outcome = "skipped"
            record.error = str(exc) if isinstance(exc, TenantLeft) else (
                "unknown tenant" if tenant is None else f"tenant is {tenant.status}")
            if isinstance(exc, SourceChanged):  # nothing queued now: the fan-out queues
                self.tenants.clear_fetch_queued(tenant.tenant_id)
            return None
        if isinstance(exc, (TokenError, Forbidden)) and tenant.consent_app != used:
            # consented to another app since the fan-out: the next fan-out's run takes
            # that app's token (nothing queued now, so it queues one)
            record.outcome = "skipped"
            record.error = f"the tenant now trusts the {tenant.consent_app} app"
            self.tenants.clear_fetch_queued(tenant.tenant_id)
            return None
        if isinstance(exc, Throttled):
            record.outcome, record.error = "throttled", str(exc)
            self._requeue(tenant.tenant_id, request, exc.retry_after, throttled=True)
        elif isinstance(exc, TokenError):
            if exc.status is None and not exc.app_wide:
                self._record_failure(tenant, exc, record)  # unknown token trouble:
                return exc  # retried like any transient failure
            if used_graph and exc.reason == "consent_missing":
                exc.reason = "graph_consent_missing"
            self._token_failure(tenant, exc, record)
        elif isinstance(exc, GraphConsentMissing):
            self._stop_tenant(tenant, TenantStatus.CONSENT_REVOKED, "graph_consent_missing",
                              str(exc), record)
        elif isinstance(exc, Forbidden):
            reason = "no_defender" if exc.code == "DisabledFeature" else "permission_missing"
            self._stop_tenant(tenant, TenantStatus.UNAVAILABLE, reason, str(exc), record)
        else:  # transient: recorded, then retried through the queue
            self._record_failure(tenant, exc, record)
            return exc
        return None

    def _worth_recording(self, record: RunRecord) -> bool:
        """A run history row for every run that did something or went wrong; an idle one
        (success, nothing new or changed) at most every IDLE_RUN_EVERY seconds per tenant
        and process. The tenant row's last_success_at says when it last fetched."""
        idle = record.outcome == "success" and not (record.new or record.changed)
        now = self.clock()
        last = self.idle_recorded.get(record.tenant_id)
        if idle and last is not None and now - last < IDLE_RUN_EVERY:
            return False
        self.idle_recorded[record.tenant_id] = now
        return True

    def _source(self, tenant: Tenant) -> PageSource[Any]:
        """How this run reads the tenant's source (page_sources.py)."""
        fetch = self.settings.fetch
        if tenant.source == "graph":
            if self.graph is None:
                raise RuntimeError("no Graph client: this worker cannot fetch graph tenants")
            return GraphPages(self.graph, fetch.page_size, fetch.initial_lookback_days,
                              fetch.overlap_seconds)
        return MdePages(self.client, self.settings.identity.api_base(tenant.region),
                        fetch.page_size, fetch.initial_lookback_days, fetch.overlap_seconds)

    def _fetch(self, hold: RunHold, request: FetchRequest, record: RunRecord,
               opening: Opening, budget: Budget) -> None:
        """Read pages until the query's end, each stored chunk by chunk, within the budget
        and the run's pages; mde's cursor moves with each chunk, a graph chain's at its
        end (docs/ingest.md, "Graph fetch")."""
        source = self._source(hold.tenant)
        fetch = self.settings.fetch
        tenant, state = hold.tenant, hold.state
        committed = opening.cursor
        position, covers = source.start(committed, request.continuation)
        tokens = self._tokens(tenant)
        token = source.token(tokens, tenant.tenant_id)
        retried_auth = False
        more = False
        relay = RelayTrigger(lambda: self.relay_queue.request(tenant.tenant_id))
        progress = Progress(position, committed, Index(), ChunkCommits(
            self.committer, state, opening.cursor_etag, relay), hold, fetch.overlap_seconds,
            opening.recent if fetch.overlap_seconds else None, covers=covers,
            schema=source.schema)
        with contextlib.ExitStack() as closing:  # run last to first, each whatever raised
            closing.callback(relay.flush)
            # the last commit lands (or raises) before the run counts as done
            closing.callback(progress.commits.finish)
            while True:
                if record.pages >= fetch.max_pages_per_run:
                    more = True
                    break
                wait = budget.wait_seconds()
                if wait:
                    record.error = f"own call budget spent; continuing in {wait}s"
                    hold.secure()
                    if source.checkpoints:
                        self._checkpoint(progress)
                    self._requeue(tenant.tenant_id,
                                  FetchRequest(tenant.tenant_id, True, "budget"), wait)
                    record.outcome = "deferred"
                    return
                budget.spend()
                record.api_calls += 1
                try:
                    with source.read(token, progress.position) as page:
                        record.pages += 1
                        received = self._store_page(tenant, source.documents(page),
                                                    progress, record)
                    gc_pause.tidy()
                except Unauthorized:
                    if retried_auth:
                        raise TokenError(f"{source.api} refused fresh tokens", None,
                                         TenantStatus.CONSENT_REVOKED, "api_unauthorized"
                                         ) from None
                    retried_auth = True
                    tokens.forget(tenant.tenant_id)
                    token = source.token(tokens, tenant.tenant_id)
                    continue
                except ExpiredLink:
                    log.warning("tenant %s: Graph's nextLink expired; the chain is read "
                                "again from %s", tenant.tenant_id,
                                progress.position.watermark)
                    progress.position = source.restarted(progress.position)
                    progress.covers = False  # `seen` misses what the dead chain read
                    continue
                following = source.following(page, progress.position, received)
                if following is not None:
                    progress.position = following
                    continue
                ended = source.at_rest(progress.position)
                if ended is not None:
                    if ended != progress.committed:
                        hold.secure()
                        progress.commits.submit([], [], [], ended, stamp=ended.watermark,
                                                recent=progress.recent_at(ended))
                    progress.position = progress.committed = ended
                break
            if more and source.checkpoints:
                hold.secure()
                self._checkpoint(progress)
        if not more and source.incidents:
            more = not self._fetch_incidents(hold, record, budget, tokens)
        if more:
            hold.secure()
            self._requeue(tenant.tenant_id, FetchRequest(tenant.tenant_id, True, "continue"),
                          0)
        hold.fetched_ok(more)
        record.outcome = "partial" if more else "success"

    def _fetch_incidents(self, hold: RunHold, record: RunRecord, budget: Budget,
                         tokens: Tokens) -> bool:
        """The tenant's incidents after its alerts, within the same budget, then their
        outbox drained; False when the chain stopped before its end (continued by the
        next run)."""
        if self.incident_fetch is None or self.graph is None:
            return True
        tenant = hold.tenant

        def token(fresh: bool) -> str:
            if fresh:
                tokens.forget(tenant.tenant_id)
            return tokens.token(tenant.tenant_id, graph_cursor.SCOPE)

        counts: dict[str, int] = {}
        try:
            done = self.incident_fetch.run(self.graph, tenant, token, budget, counts,
                                           hold.secure)
        except GraphConsentMissing as exc:  # its alerts are fetched: the tenant stays
            done = True
            record.error = clean(f"incidents not read: SecurityIncident.Read.All is not "
                                 f"granted ({exc})", 1000)
            log.warning("tenant %s: %s", tenant.tenant_id, record.error)
        finally:
            record.api_calls += counts.get("calls", 0)
            if self.incident_relay is not None and counts.get("waiting"):
                self.incident_relay.drain(tenant.tenant_id)
        log.info("incidents tenant=%s new=%d changed=%d unchanged=%d calls=%d",
                 tenant.tenant_id, counts.get("new", 0), counts.get("changed", 0),
                 counts.get("unchanged", 0), counts.get("calls", 0))
        return done

    @staticmethod
    def _checkpoint(progress: Progress) -> None:
        """A chain left unfinished: its position committed, so the next run follows the
        nextLink it stopped at instead of the one of its last commit."""
        if progress.position != progress.committed:
            progress.commits.submit([], [], [], progress.position,
                                    stamp=progress.position.watermark,
                                    recent=progress.recent_at(progress.position))
            progress.committed = progress.position

    def _tokens(self, tenant: Tenant) -> Tokens:
        """The Tokens of the app the tenant consented to (a triage tenant may never have
        consented to the read app)."""
        if tenant.consent_app == "triage" and self.triage_tokens is not None:
            return self.triage_tokens
        return self.tokens

    # one page ---------------------------------------------------------------------------
    def _store_page(self, tenant: Tenant, alerts: Iterator[alert_stream.Document],
                    progress: Progress, record: RunRecord) -> int:
        """Store a page chunk by chunk as it arrives: a chunk is stored and committed
        while the rest of the page is still being received (peak memory ~ the chunks of
        the commits in flight and the one being built).
        Returns the number of alerts received."""
        received = 0
        schema = progress.schema
        field_name = schema.version_field

        def items() -> Iterator[Item]:
            nonlocal received
            for alert, data in alerts:
                if not isinstance(alert, dict) or not alert.get("id") or not alert.get(
                        field_name):
                    raise DefenderError(f"an alert without id or {field_name}", 200,
                                        "MalformedResponse")
                received += 1
                try:
                    version = timefmt.normalize(alert[field_name])
                except (ValueError, TypeError):
                    raise DefenderError(f"an alert whose {field_name} is not a time", 200,
                                        "MalformedResponse") from None
                yield version, schema.day(alert, version), alert, data, schema.view(alert)

        for chunk in self._chunks(items()):
            if schema is MdeSchema and chunk[0][0] < progress.position.watermark:
                log.warning("tenant %s: Defender answered alerts out of lastUpdateTime "
                            "order (%s after %s)", tenant.tenant_id, chunk[0][0],
                            progress.position.watermark)
            self._store_chunk(tenant, chunk, progress, record)
        return received

    @staticmethod
    def _chunks(items: Iterator[Item]) -> Iterator[list[Item]]:
        """Chunks of at most CHUNK_ALERTS alerts and CHUNK_DAYS index days, each sorted
        by version (stable: Defender's order among equal times). A page's first chunks
        are smaller (FIRST_CHUNK_ALERTS, doubling): nothing is written before the first
        chunk is whole, and storage waiting idle for 1,000 alerts was ~5% of a run."""
        chunk: list[Item] = []
        days: set[str] = set()
        size = min(FIRST_CHUNK_ALERTS, CHUNK_ALERTS)
        for item in items:
            day = item[1]
            if chunk and (len(chunk) >= size or (day not in days
                                                 and len(days) >= CHUNK_DAYS)):
                chunk.sort(key=_version)
                yield chunk
                chunk, days, size = [], set(), min(2 * size, CHUNK_ALERTS)
            chunk.append(item)
            days.add(day)
        if chunk:
            chunk.sort(key=_version)
            yield chunk

    def _store_chunk(self, tenant: Tenant, chunk: list[Item], progress: Progress,
                     record: RunRecord) -> None:
        """Classify, send the rows of new and changed alerts, and hand the commit over:
        it runs once the rows are stored, while this thread goes on with the next."""
        if self._known_unchanged(chunk, progress, record):
            return
        days = {item[1] for item in chunk}
        progress.commits.reap()
        progress.index.evict(keep=days)
        index = progress.commits.state.load_index(days, into=progress.index)
        events: list[bytes] = []  # serialized messages
        now = datetime.now(UTC)
        schema = progress.schema
        graph = schema is GraphSchema
        marks = self._marks(tenant.tenant_id, chunk, index, schema)

        def rows_to_write() -> Iterator[list[dict[str, Any]]]:
            for version, day, alert, data, view in chunk:
                alert_id = schema.key(alert)
                old = index.get(alert_id)
                new = schema.entry(alert, version, view)
                if old is not None and (old[0] > version or same(old, new)):
                    record.unchanged += 1  # re-read from the overlap, or an older copy
                    progress.seen[alert_id] = old
                    continue
                progress.hold.secure()  # before the first write of the run
                progress.seen[alert_id] = new
                if old is None:
                    record.new += 1
                else:
                    record.changed += 1
                by = _own(marks.get(alert_id), version, old, new) if old is not None \
                    else None
                events.append(event_message(
                    tenant.tenant_id, progress.hold.tenant.display_name, alert, version, old,
                    new, by, schema.name, alert_id=alert_id if graph else None, view=view))
                index.put(alert_id, day, new)
                yield alert_rows(tenant.tenant_id, alert, now, data, schema.name,
                                 key=alert_id if graph else None, view=view)

        # each transaction is sent as soon as it is packed, while the next is built; they
        # are independent and idempotent
        pending: list[Future[Any]] = []
        try:
            for rows in transactions(rows_to_write()):
                pending.append(self.writers.submit(self.alerts.store, rows))
            position, committed = schema.moved(progress.position, progress.committed,
                                               [item[0] for item in chunk])
            shards = index.snapshot()
            if shards or events or pending or committed != progress.committed:
                progress.hold.secure()
                progress.commits.submit(pending, shards, events, committed,
                                        stamp=chunk[-1][0],  # raises the last one's error
                                        recent=progress.recent_at(committed))
            # else: a re-read that changes nothing (the overlap of an idle run): no commit
        except BaseException:
            wait(pending)  # no write of this run goes on after it has ended
            raise
        progress.position, progress.committed = position, committed

    def _marks(self, tenant_id: str, chunk: list[Item], index: Index,
               schema: Schema = MdeSchema) -> dict[str, list[Mark]]:
        """The own-change marks of the chunk's updated alerts, by alert id: one bounded
        read, made only when the chunk updates an alert the index knows."""
        if self.own_marks is None:
            return {}
        updated: set[str] = set()
        versions: list[str] = []
        for version, _, alert, _, view in chunk:
            alert_id = schema.key(alert)
            old = index.get(alert_id)
            if old is not None and not (old[0] > version or same(old, schema.entry(
                    alert, version, view))):
                updated.add(alert_id)
                versions.append(version)
        if not updated:
            return {}
        found: dict[str, list[Mark]] = {}
        for mark in self.own_marks.around(tenant_id, *span(versions)):
            if mark.alert_id in updated:
                found.setdefault(mark.alert_id, []).append(mark)
        return found

    @staticmethod
    def _known_unchanged(chunk: list[Item], progress: Progress, record: RunRecord) -> bool:
        """True (and the chunk consumed) when every alert of it is as committed within
        the overlap (`Progress.known`) and the cursor would not move: the overlap re-read
        of an idle run, classified without reading the version index."""
        known = progress.known
        if known is None and not progress.seen:
            return False
        schema = progress.schema
        entries = []
        for version, _, alert, _, view in chunk:
            alert_id = schema.key(alert)
            entry = progress.seen.get(alert_id) or (known or {}).get(alert_id)
            if entry is None or entry != schema.entry(alert, version, view):
                return False
            entries.append((alert_id, entry))
        position, committed = schema.moved(progress.position, progress.committed,
                                           [item[0] for item in chunk])
        if schema is MdeSchema and committed != progress.committed:
            return False  # (a graph chain's cursor moves at its end: _fetch)
        progress.seen.update(entries)
        record.unchanged += len(chunk)
        progress.position = position
        return True

    # after the run ----------------------------------------------------------------------
    def _requeue(self, tenant_id: str, request: FetchRequest, delay: int,
                 throttled: bool = False) -> None:
        """Put the tenant's fetch back on the queue, invisible for `delay` seconds."""
        delay = max(0, min(delay, 7 * 24 * 3600 - 1))
        self.fetch_queue.request(FetchRequest(tenant_id, True, request.reason), delay)
        until = datetime.now(UTC) + timedelta(seconds=delay) if throttled else None
        self.tenants.mark_requeued(tenant_id, throttled_until=until)

    def _record_failure(self, tenant: Tenant, exc: BaseException, record: RunRecord) -> None:
        record.outcome = "failed"
        record.error = clean(f"{type(exc).__name__}: {exc}", 1000)
        self.tenants.mark_failing(tenant.tenant_id, record.error,
                                  tenant.consecutive_failures + 1)

    def _token_failure(self, tenant: Tenant, exc: TokenError, record: RunRecord) -> None:
        if exc.status is not None:
            self._stop_tenant(tenant, exc.status, exc.reason, str(exc), record)
            return
        # the MSSP's own app is broken: one app-wide error, not a failure of this tenant
        record.outcome = "app_error"
        record.error = clean(str(exc), 1000)
        self.app_health.identity_failed(exc.reason, record.error)
        log.error("MSSP app credential rejected (%s); fix MSSP_CLIENT_SECRET or the "
                  "certificate", exc.reason)
        self.tenants.clear_fetch_queued(tenant.tenant_id)

    def _stop_tenant(self, tenant: Tenant, status: TenantStatus, reason: str, error: str,
                     record: RunRecord) -> None:
        """Revoked consent, a gone tenant, no Defender: stop fetching it, say why."""
        record.outcome = str(status)
        record.error = clean(error, 1000)
        self.tenants.stop(tenant.tenant_id, status, reason, record.error)
        log.warning("tenant %s is now %s (%s)", tenant.tenant_id, status, reason)
        self.notices.add(f"tenant_{status}", tenant.tenant_id,
                         f"Tenant {status.replace('_', ' ')}: {tenant.display_name}",
                         f"{tenant.display_name} ({tenant.tenant_id}) is no longer fetched: "
                         f"{reason}. Last error: {record.error}")
