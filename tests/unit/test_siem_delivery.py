"""SIEM push delivery on the in-memory repositories, with senders that record what they are
handed (no Azurite, no destination): each event once per output and in order, a failing
output backs off and retries without losing, duplicating or holding back another, the
position moves only once a destination took a batch, leases, ticks and hand-overs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from shared.messages import AlertEvent
from shared.siem import delivery as delivery_module
from shared.siem.delivery import (
    LEASE_SECONDS,
    MAX_BACKOFF,
    QUEUED_SECONDS,
    SiemDelivery,
    backoff,
)
from shared.siem.feed import Feed
from shared.siem.outputs import Output
from shared.siem.senders import DeliveryError
from shared.storage.keys import encode_key
from shared.storage.memory.ingest import MemoryAlerts
from shared.storage.memory.siem import MemoryDeliverQueue, MemorySiemDelivery, MemorySiemFeed
from shared.storage.siem_delivery import StateChanged

SETTLE = 5
TENANT = str(uuid.uuid4())


class Clock:
    """One clock for the feed (seconds) and the delivery (datetimes)."""

    def __init__(self) -> None:
        self.at = datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()

    def time(self) -> float:
        return self.at

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.at, UTC)

    def advance(self, seconds: float) -> None:
        self.at += seconds


class RecordingSender:
    """Records each batch it accepts; `down` (an error text) refuses every batch;
    `refuse_after`: accepts that many batches, then refuses; `during`: run on each send."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = ""
        self.refuse_after: int | None = None
        self.during: Any = None
        self.attempts = 0

    def send(self, events: Sequence[Mapping[str, Any]]) -> None:
        self.attempts += 1
        if self.during:
            self.during()
        if self.down:
            raise DeliveryError(self.down)
        if self.refuse_after is not None and len(self.batches) >= self.refuse_after:
            raise DeliveryError("HTTP 503 from the destination")
        self.batches.append([e["event_id"] for e in events])

    @property
    def received(self) -> list[str]:
        return [event_id for batch in self.batches for event_id in batch]


class Rig:
    """The SIEM storage fakes, one recording sender per output, and a delivery on them;
    `outputs`: name -> Output options (every output takes TENANT only)."""

    def __init__(self, **outputs: dict[str, Any]) -> None:
        self.clock = Clock()
        self.feed = Feed(MemorySiemFeed(), MemoryAlerts(), SETTLE, 7, self.clock.time)
        self.states = MemorySiemDelivery()
        self.queue = MemoryDeliverQueue()
        self.options: dict[str, dict[str, Any]] = {}
        self.senders: dict[str, RecordingSender] = {}
        for name, options in outputs.items():
            self.add(name, **options)
        self.delivery = self.build()
        for name in outputs:
            assert self.delivery.deliver(name).status == "idle"  # its state starts now

    def add(self, name: str, **options: Any) -> None:
        self.options[name] = {"tenants": frozenset({TENANT}), **options}
        self.senders[name] = RecordingSender()

    def build(self) -> SiemDelivery:
        """A delivery (a worker) on the same storage; each has its own lease owner."""
        return SiemDelivery(self.states, self.queue, self.feed,
                            tuple(Output(name, "webhook", "json", **options)
                                  for name, options in self.options.items()),
                            senders=lambda o: self.senders[o.name], clock=self.clock.now)

    def append(self, count: int, tenant: str = TENANT, **alert: Any) -> list[str]:
        ids = []
        for _ in range(count):
            n = uuid.uuid4().hex[:8]
            body = {"id": f"da{n}", "title": f"Alert {n}", "severity": "High", **alert}
            e = AlertEvent(tenant, "Tenant", f"da{n}", "2026-11-30T10:00:00.0000000Z",
                           "new", {}, body)
            assert self.feed.append(e)
            ids.append(e.event_id)
            self.clock.advance(0.01)
        return ids

    def settle(self) -> None:
        self.clock.advance(SETTLE + 0.1)


def test_each_event_reaches_each_output_once_and_in_order():
    r = Rig(a={"batch_size": 3}, b={"batch_size": 100})
    sent = r.append(7)
    r.append(2, tenant=str(uuid.uuid4()))  # another tenant: neither output takes it
    r.settle()
    a = r.delivery.deliver("a")
    assert (a.status, a.delivered, a.batches) == ("delivered", 7, 3)
    assert r.senders["a"].batches == [sent[:3], sent[3:6], sent[6:]]
    assert r.delivery.deliver("b").batches == 1
    assert r.senders["b"].received == sent
    assert r.delivery.deliver("a").status == "idle"  # nothing again
    more = r.append(2)
    r.settle()
    assert r.delivery.deliver("a").delivered == 2
    assert r.senders["a"].received == sent + more


def test_a_new_output_starts_with_what_arrives_after_it():
    r = Rig(a={})
    r.settle()
    before = r.append(3)
    r.settle()
    r.add("late")
    late = r.build()
    assert late.deliver("late").status == "idle"
    assert r.senders["late"].received == [] and r.delivery.deliver("a").delivered == 3
    after = r.append(1)
    r.settle()
    assert late.deliver("late").delivered == 1 and r.senders["late"].received == after
    assert r.senders["a"].received == before


def test_only_the_severities_an_output_takes():
    r = Rig(a={"min_severity": "Medium"})
    high = r.append(2, severity="High")
    r.append(2, severity="Low")
    medium = r.append(1, severity="Medium")
    r.settle()
    assert r.delivery.deliver("a").delivered == 3
    assert r.senders["a"].received == high + medium


def test_a_failing_output_retries_without_losing_duplicating_or_holding_back_another():
    r = Rig(down={"batch_size": 2}, up={"batch_size": 2})
    r.senders["down"].down = "HTTP 503 Service Unavailable"
    sent = []
    for round_ in range(3):
        sent += r.append(3)
        r.settle()
        failed = r.delivery.deliver("down")
        assert failed.status == "failed" and "503" in failed.error
        assert r.delivery.deliver("up").delivered == 3  # not held back
        r.clock.advance(backoff(round_ + 1))  # the back-off passes
    [status] = [s for s in r.delivery.status() if s["name"] == "down"]
    assert status["failures"] == 3 and "503" in status["last_error"]
    r.senders["down"].down = ""
    outcome = r.delivery.deliver("down")
    assert (outcome.status, outcome.delivered) == ("delivered", 9)
    assert r.senders["down"].received == sent  # all of them, once, in order
    assert r.senders["up"].received == sent
    [status] = [s for s in r.delivery.status() if s["name"] == "down"]
    assert status["failures"] == 0 and status["retry_at"] is None
    assert status["last_success_at"] and status["last_error"]  # the last error stays


def test_the_position_moves_only_after_the_destination_took_the_batch():
    r = Rig(a={"batch_size": 2})
    sent = r.append(5)
    r.settle()
    r.senders["a"].refuse_after = 1  # takes the first batch, refuses the second
    outcome = r.delivery.deliver("a")
    assert (outcome.status, outcome.delivered, outcome.batches) == ("failed", 2, 1)
    state = r.states.get("a")
    assert state is not None and state.after.endswith("|" + encode_key(sent[1]))
    assert state.failures == 1 and state.retry_at is not None
    r.senders["a"].refuse_after = None
    r.clock.advance(backoff(1))
    assert r.delivery.deliver("a").delivered == 3  # from the refused batch on
    assert r.senders["a"].received == sent


def test_a_sender_crash_moves_nothing_and_the_batch_is_sent_again():
    r = Rig(a={"batch_size": 10})
    sent = r.append(3)
    r.settle()
    before = r.states.get("a")

    def crash() -> None:
        raise OSError("worker died mid-send")

    r.senders["a"].during = crash
    with pytest.raises(OSError):
        r.delivery.deliver("a")
    after = r.states.get("a")
    assert (after.bucket, after.after) == (before.bucket, before.after)
    r.senders["a"].during = None
    r.clock.advance(LEASE_SECONDS + 1)  # the dead run's lease runs out
    assert r.build().deliver("a").delivered == 3
    assert r.senders["a"].received == sent


def test_back_off_doubles_to_its_cap_and_a_run_while_waiting_does_nothing():
    assert [backoff(n) for n in (1, 2, 3, 4, 7, 30)] == [10, 20, 40, 80, 640, MAX_BACKOFF]
    r = Rig(a={})
    r.senders["a"].down = "refused"
    r.append(1)
    r.settle()
    for failures in (1, 2, 3):
        assert r.delivery.deliver("a").status == "failed"
        state = r.states.get("a")
        assert state.failures == failures
        assert state.retry_at == r.clock.now() + timedelta(seconds=backoff(failures))
        attempts = r.senders["a"].attempts
        r.delivery.tick()
        assert r.queue.requested == []  # backing off: not queued
        waiting = r.delivery.deliver("a")  # a message queued before: waits, sends nothing
        assert waiting.status == "waiting" and r.senders["a"].attempts == attempts
        r.clock.advance(backoff(failures))
    r.senders["a"].down = ""
    assert r.delivery.deliver("a").delivered == 1


def test_tick_queues_each_ready_output_once():
    r = Rig(a={}, b={})
    assert r.delivery.tick() == ["a", "b"] and r.queue.requested == ["a", "b"]
    assert r.delivery.tick() == []  # queued and not picked up yet: no pile-up
    r.clock.advance(QUEUED_SECONDS + 1)  # the message was lost: queued again
    assert r.delivery.tick() == ["a", "b"]
    assert r.delivery.deliver("a").status == "idle"
    assert r.delivery.tick() == ["a"]
    assert r.queue.requested == ["a", "b", "a", "b", "a"]


def test_one_run_per_output_at_a_time():
    r = Rig(a={})
    sent = r.append(2)
    r.settle()
    other = r.build()
    held: list[str] = []

    def meanwhile() -> None:  # another worker gets the same output's message
        held.append(other.deliver("a").status)
        held.append(str(other.tick()))

    r.senders["a"].during = meanwhile
    assert r.delivery.deliver("a").delivered == 2
    assert held == ["busy", "[]"]  # leased: neither runs nor queues it
    assert r.senders["a"].received == sent


def test_a_run_that_lost_its_lease_ends_and_its_batch_is_sent_again():
    r = Rig(a={})
    sent = r.append(2)
    r.settle()

    def taken_over() -> None:  # the lease ran out and another run took the output
        r.senders["a"].during = None
        r.clock.advance(LEASE_SECONDS + 1)
        r.build().deliver("a")

    r.senders["a"].during = taken_over
    with pytest.raises(StateChanged):
        r.delivery.deliver("a")  # the message is retried (then poisoned) by the host
    assert r.senders["a"].batches == [sent, sent]  # at least once; each carries its id
    r.clock.advance(LEASE_SECONDS + 1)
    assert r.build().deliver("a").status == "idle"  # the other run moved the position


def test_a_long_backlog_hands_over_to_a_fresh_message(monkeypatch):
    r = Rig(a={"batch_size": 2})
    sent = r.append(5)
    r.settle()
    ticks = iter(range(0, 10_000, 150))  # each look at the time: 150 s later
    monkeypatch.setattr(delivery_module, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    outcome = r.delivery.deliver("a")
    assert (outcome.status, outcome.delivered) == ("delivered", 2)
    assert r.queue.requested == ["a"]  # the rest in a fresh run
    assert r.states.get("a").owner == ""  # released for it
    monkeypatch.undo()
    assert r.delivery.deliver("a").delivered == 3
    assert r.senders["a"].received == sent


def test_an_output_removed_since_it_was_queued():
    r = Rig(a={})
    assert r.delivery.deliver("gone").status == "unknown"
    assert r.states.get("gone") is None


def test_status_reports_lag_and_health():
    r = Rig(a={}, b={})
    r.senders["b"].down = "refused"
    r.append(1)
    r.settle()
    r.delivery.deliver("a")
    r.delivery.deliver("b")
    r.clock.advance(30)
    a, b = r.delivery.status()
    assert a["name"] == "a" and a["failures"] == 0 and a["last_success_at"]
    assert 30 <= a["lag_seconds"] <= 36
    assert b["failures"] == 1 and b["last_error"] == "refused" and b["retry_at"]
