"""Push delivery: each output reads the feed from its own position, so a destination that
is down for hours only waits (its events stay in the feed) and never holds back another.

Per output, one state row holds the position, a lease (ETag-guarded, so two deliveries of
the same output never interleave) and the back-off after failures. The position moves only
after the destination took the batch: at least once, with a dedupe key in every event.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.logsafe import clean
from shared.siem.feed import END, Feed, Filters, Position, bucket_of
from shared.siem.outputs import Output
from shared.siem.senders import DeliveryError, Sender, sender_for
from shared.storage.siem_delivery import (
    DeliverQueue,
    OutputState,
    SiemDeliveryRepository,
    StateChanged,
)

log = logging.getLogger("mssp_hub.siem")
LEASE_SECONDS = 120
QUEUED_SECONDS = 300  # a deliver message not picked up by then is sent again
RUN_SECONDS = 200  # then hand over to a fresh message (the host's timeout is longer)
MAX_BACKOFF = 900


def backoff(failures: int) -> int:
    return min(10 * 2 ** max(failures - 1, 0), MAX_BACKOFF)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    output: str
    delivered: int = 0
    batches: int = 0
    status: str = "idle"  # idle | delivered | failed | busy | waiting | unknown
    error: str = ""


class SiemDelivery:
    """Delivers the feed to each push output from the output's own position."""

    def __init__(self, states: SiemDeliveryRepository, queue: DeliverQueue, feed: Feed,
                 outputs: tuple[Output, ...],
                 senders: Callable[[Output], Sender] = sender_for,
                 clock: Callable[[], datetime] = _now) -> None:
        self.states = states
        self.queue = queue
        self.feed = feed
        self.outputs = {o.name: o for o in outputs}
        self.senders = {o.name: senders(o) for o in outputs}
        self.clock = clock
        self.owner = uuid.uuid4().hex

    def _state(self, name: str) -> OutputState:
        state = self.states.get(name)
        if state is not None:
            return state
        horizon = self.feed.horizon_us()  # a new output starts with what arrives now
        return self.states.create(name, bucket_of(horizon), f"{horizon:016d}{END}")

    # timer ------------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Queue a delivery for each output that is not busy, queued or backing off."""
        now = self.clock()
        queued = []
        for name in self.outputs:
            state = self._state(name)
            if (state.owner and state.lease_until and state.lease_until > now) or \
                    (state.retry_at and state.retry_at > now) or \
                    (state.queued_at and state.queued_at > now - timedelta(
                        seconds=QUEUED_SECONDS)):
                continue
            try:
                self.states.mark_queued(state, now)
            except StateChanged:
                continue  # changed under us: someone is on it
            self.queue.request(name)
            queued.append(name)
        return queued

    # worker -----------------------------------------------------------------------------
    def deliver(self, name: str) -> Outcome:
        outcome = Outcome(name)
        output = self.outputs.get(name)
        if output is None:
            outcome.status = "unknown"  # removed from SIEM_OUTPUTS since it was queued
            return outcome
        state = self._state(name)
        now = self.clock()
        if state.owner and state.owner != self.owner and state.lease_until \
                and state.lease_until > now:
            outcome.status = "busy"
            return outcome
        if state.retry_at and state.retry_at > now:
            outcome.status = "waiting"
            self.states.unqueue(state)
            return outcome
        try:
            state = self.states.take_lease(state, self.owner,
                                           now + timedelta(seconds=LEASE_SECONDS))
        except StateChanged:
            outcome.status = "busy"
            return outcome
        filters = Filters(tenants=tuple(sorted(output.tenants)),
                          severities=output.severities() or ())
        position = Position(state.bucket, state.after)
        deadline = time.monotonic() + RUN_SECONDS
        more = True
        while more and time.monotonic() < deadline:
            page = self.feed.read(position, output.batch_size, filters)
            if page.events:
                try:
                    self.senders[name].send(page.events)
                except DeliveryError as exc:
                    failures = state.failures + 1
                    outcome.status, outcome.error = "failed", clean(exc)
                    self.states.mark_failed(state, outcome.error, self.clock(), failures,
                                            self.clock() + timedelta(seconds=backoff(failures)))
                    log.warning("siem output %s failed (%d in a row): %s", name, failures,
                                outcome.error)
                    return outcome
                outcome.delivered += len(page.events)
                outcome.batches += 1
            position, more = page.position, page.more
            # lost the lease: StateChanged ends this run
            state = self.states.advance(
                state, position.bucket, position.after,
                self.clock() + timedelta(seconds=LEASE_SECONDS),
                delivered_at=self.clock() if page.events else None)
        self.states.release(state)
        if more:
            self.queue.request(name)
        outcome.status = "delivered" if outcome.delivered else "idle"
        return outcome

    # status -----------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        return output_status(self.states, tuple(self.outputs.values()), self.feed.now_us())


def output_status(states: SiemDeliveryRepository, outputs: tuple[Output, ...], now_us: int
                  ) -> list[dict[str, Any]]:
    """Each output's lag and health, for /api/siem/outputs, /api/health and the portal."""
    out = []
    for output in outputs:
        state = states.get(output.name)
        after = state.after[:16] if state else ""
        lag = max(0, round((now_us - int(after)) / 1e6)) if after.isdigit() else None
        out.append({"name": output.name, "type": output.type, "format": output.format,
                    "lag_seconds": lag, "failures": state.failures if state else 0,
                    "last_error": (state.last_error if state else "") or None,
                    "last_error_at": _iso(state.last_error_at if state else None),
                    "retry_at": _iso(state.retry_at if state else None),
                    "last_success_at": _iso(state.last_success_at if state else None)})
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
