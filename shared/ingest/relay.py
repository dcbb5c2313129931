"""Relay: committed outbox rows become one message per event on the notify and SIEM queues.

The outbox row records how many of its events were sent (ETag-guarded), so a relay that
dies resumes after the last recorded chunk, and two relays racing on one row cannot both
proceed. Consumers dedupe on `event_id` for the one chunk a crash can repeat.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.messages import relay_text
from shared.storage.errors import StateChanged
from shared.storage.ingest_state import IngestStates
from shared.storage.queues import EventQueue

log = logging.getLogger("mssp_hub.relay")
SEND_CHUNK = 200
SENDERS = 16


class Relay:
    def __init__(self, states: IngestStates, notify: EventQueue, siem: EventQueue) -> None:
        self.states, self.notify, self.siem = states, notify, siem
        self.pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="relay")

    def _send(self, events: list[dict[str, Any]]) -> None:
        texts = [relay_text(e) for e in events]
        futures = [self.pool.submit(q.send, t) for t in texts
                   for q in (self.notify, self.siem)]
        for future in futures:
            future.result()

    def relay(self, tenant_id: str) -> int:
        """Send every pending outbox row of the tenant; returns the events sent."""
        state = self.states.of(tenant_id)
        sent_total = 0
        for row_key in state.outbox_rows():
            loaded = state.outbox(row_key)
            if loaded is None:
                continue
            events, sent, etag = loaded
            try:
                etag = state.mark_sent(row_key, sent, etag)  # claim: fails if raced
                while sent < len(events):
                    chunk = events[sent:sent + SEND_CHUNK]
                    self._send(chunk)
                    sent += len(chunk)
                    sent_total += len(chunk)
                    etag = state.mark_sent(row_key, sent, etag)
                state.delete_outbox(row_key, etag)
            except StateChanged:
                log.info("outbox %s of %s taken by another relay", row_key, tenant_id)
                continue
        return sent_total
