"""Relay: committed outbox rows become one message per event on the notify and SIEM queues.

One relay per outbox at a time: a relay takes the tenant's relay lease (a row in its
IngestState partition) before it sends, renews it before each chunk and releases it at
the end. A relay that finds the lease held by another returns at once (and, given a relay
queue, asks again once the lease would expire, in case its holder died); the holder looks
at the outbox again after releasing, so a row committed while it held the lease is not
left behind. Each row records how many of its events were sent (ETag-guarded), so a relay
that dies keeps the lease until it expires and the next one resumes after the last
recorded chunk: at most that one unrecorded chunk is sent twice, and consumers dedupe on
`event_id`. The tenant's alert counts change in the same transaction as each chunk is
recorded, so they count it once; the run then copies them to the tenant summaries (and a
run that finds a copy left undone, by a relay that died, makes it).

Each chunk also keeps the portal's AlertIndex in step (`_index`, shared/ingest/index_feed.py)
before the chunk is sent and recorded: a resent chunk writes the same entries again.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from shared.ingest.index_feed import IndexFeed
from shared.ingest.tally import TallyKeeper
from shared.messages import batch_texts, relay_text
from shared.storage.errors import StateChanged
from shared.storage.ingest_state import IngestState, IngestStates
from shared.storage.queues import EventQueue, RelayQueue
from shared.storage.tenant_summaries import TenantSummaries

log = logging.getLogger("mssp_hub.relay")
SEND_CHUNK = 200
SENDERS = 16
LEASE_SECONDS = 60  # far above one chunk's sends; renewed before each


class LeaseLost(Exception):
    """The relay lease expired and another relay took it: this one stops sending."""


class Relay:
    def __init__(self, states: IngestStates, notify: EventQueue, siem: EventQueue,
                 retry: RelayQueue | None = None, lease_seconds: int = LEASE_SECONDS, *,
                 index: IndexFeed | None = None,
                 summaries: TenantSummaries | None = None,
                 correlate: EventQueue | None = None) -> None:
        self.states, self.notify, self.siem, self.retry = states, notify, siem, retry
        # correlation's copy of each chunk (shared/correlation/; None: not kept)
        self.queues = (notify, siem) if correlate is None else (notify, siem, correlate)
        self.summaries = summaries
        self.lease_seconds = lease_seconds
        self.index = index  # the portal's alert index, fed here (None: not kept)
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="relay")

    def _send(self, events: list[dict[str, Any]]) -> None:
        texts = batch_texts([relay_text(e) for e in events])  # as few messages as fit
        futures = [self.pool.submit(q.send, t) for t in texts
                   for q in self.queues]
        for future in futures:
            future.result()

    def _index(self, events: list[dict[str, Any]], renewed: float) -> None:
        """The chunk's alert versions into the AlertIndex: new entries, replaced ones
        deleted. Idempotent, so a chunk sent twice writes the same again; a write ending
        past half the lease after its renewal (`renewed`, monotonic) is checked, since
        another relay may have moved those alerts on meanwhile (index_feed.py)."""
        if self.index is not None:
            self.index.record(events, deadline=renewed + self.lease_seconds / 2)

    def relay(self, tenant_id: str) -> int:
        """Send every pending outbox row of the tenant; returns the events sent."""
        state = self.states.of(tenant_id)
        sent_total = 0
        rows, behind = state.pending()  # nothing pending: one query, no lease
        behind = behind if self.summaries is not None else 0
        while rows or behind:
            behind = 0
            owner = uuid.uuid4().hex
            etag, until = state.take_relay_lease(owner, self.lease_seconds)
            if etag is None:
                log.info("relay of %s busy until %s", tenant_id, until)
                self._ask_again(tenant_id, until)
                return sent_total
            lease = _Lease(state, owner, etag, self.lease_seconds)
            tally = TallyKeeper(state, self.summaries)
            try:
                for row_key in rows:
                    sent_total += self._drain(state, row_key, lease, tally)
                tally.publish(tenant_id)
            except LeaseLost:
                log.warning("relay lease of %s lost mid-run", tenant_id)
                return sent_total
            except Exception:
                lease.release()  # a failure, not a crash: the retry need not wait
                raise
            lease.release()
            rows = state.outbox_rows()  # committed while the lease was held
        return sent_total

    def _drain(self, state: IngestState, row_key: str, lease: _Lease, tally: TallyKeeper
               ) -> int:
        """Send one row's unsent events, recording each chunk, then drop the row."""
        loaded = state.outbox(row_key)
        if loaded is None:
            return 0  # sent and dropped by the relay before
        events, sent, etag = loaded
        done = 0
        try:
            etag = state.mark_sent(row_key, sent, etag)  # claim: a failure here sends nothing
            while sent < len(events):
                renewed = time.monotonic()
                lease.renew()
                chunk = events[sent:sent + SEND_CHUNK]
                self._index(chunk, renewed)
                self._send(chunk)
                sent += len(chunk)
                done += len(chunk)
                etag = tally.record(row_key, sent, etag, chunk)  # mark_sent, counted
            state.delete_outbox(row_key, etag)
        except StateChanged as exc:  # only a relay that took over an expired lease moves it
            raise LeaseLost(row_key) from exc
        return done

    def _ask_again(self, tenant_id: str, until: datetime | None) -> None:
        """Once the holder's lease would have expired: if it died, its rows go then."""
        if self.retry is None:
            return
        left = (until - datetime.now(UTC)).total_seconds() if until else 0
        self.retry.request(tenant_id, delay=max(1, min(int(left) + 1, self.lease_seconds + 1)))


class _Lease:
    """The relay lease this run holds, renewed by its ETag."""

    def __init__(self, state: IngestState, owner: str, etag: str, seconds: int) -> None:
        self.state, self.owner, self.etag, self.seconds = state, owner, etag, seconds

    def renew(self) -> None:
        etag = self.state.renew_relay_lease(self.owner, self.seconds, self.etag)
        if etag is None:
            raise LeaseLost(self.owner)
        self.etag = etag

    def release(self) -> None:
        self.state.release_relay_lease(self.etag)
