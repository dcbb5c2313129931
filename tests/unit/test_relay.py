"""The relay on the fakes: one relay per outbox at a time, so each event goes out once
however many relays race, and a relay that dies loses nothing (at most its one
unrecorded chunk is sent again, which consumers dedupe on `event_id`)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

import pytest

from shared.ingest.events import event_message, tracked
from shared.ingest.relay import SEND_CHUNK, Relay
from shared.messages import RelayRequest, alert_events
from shared.model import Cursor
from shared.storage.memory.ingest import MemoryIngestStates, MemoryQueue
from shared.storage.queues import EventQueue, RelayQueue

TENANT = "00000000-0000-0000-0000-000000000018"
STAMP = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class SlowQueue(MemoryQueue):
    """A queue whose puts take a while, so racing relays overlap; `hook` runs before the
    first put."""

    def __init__(self, delay: float = 0.001) -> None:
        super().__init__()
        self.delay = delay
        self.hook = None

    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        hook, self.hook = self.hook, None
        if hook:
            hook()
        time.sleep(self.delay)
        super().send_message(content, visibility_timeout)


def _alert(n: int) -> dict:
    return {"id": f"da{n:06d}", "title": f"Alert {n}", "severity": "High", "status": "New",
            "alertCreationTime": STAMP, "lastUpdateTime": STAMP}


def _commit(states: MemoryIngestStates, first: int, count: int) -> None:
    """One chunk's commit: `count` events in the outbox."""
    state = states.of(TENANT)
    events = [event_message(TENANT, "Contoso", _alert(n), STAMP, None,
                            tracked(_alert(n), STAMP)) for n in range(first, first + count)]
    _, etag = state.cursor()
    state.commit([], events, Cursor(STAMP, first + count), etag, f"c{first:06d}")


@pytest.fixture
def world():
    states = MemoryIngestStates()
    notify, siem, retry = SlowQueue(), SlowQueue(), MemoryQueue()

    def relay(**options) -> Relay:
        return Relay(states, EventQueue(notify), EventQueue(siem), RelayQueue(retry),
                     **options)
    return states, notify, siem, retry, relay


def _counts(queue: MemoryQueue) -> Counter:
    return Counter(e.event_id for text in queue.texts() for e in alert_events(text))


def test_two_relays_started_together_send_each_event_once(world):
    states, notify, siem, retry, relay = world
    for first in range(0, 1000, 250):
        _commit(states, first, 250)
    relays, barrier, sent = [relay(), relay()], threading.Barrier(2), []
    first_back = threading.Event()
    notify.hook = lambda: first_back.wait(10)  # the holder's sends wait for the other

    def run(r: Relay) -> None:
        barrier.wait()
        sent.append(r.relay(TENANT))
        first_back.set()

    threads = [threading.Thread(target=run, args=(r,)) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(sent) == [0, 1000]  # the loser returned at once, the holder sent all
    for queue in (notify, siem):
        counts = _counts(queue)
        assert len(counts) == sum(counts.values()) == 1000
    assert states.of(TENANT).outbox_rows() == []
    # the loser asked again for when the lease would expire (its holder might have died)
    (text, delay), = retry.take()
    assert RelayRequest.parse(text).tenant_id == TENANT and 1 <= delay <= 61


def test_a_row_committed_while_another_relay_holds_the_lease_is_not_left_behind(world):
    states, notify, siem, _, relay = world
    _commit(states, 0, 300)
    loser_sent = []

    def meanwhile() -> None:  # during the holder's first send: a commit and its relay
        _commit(states, 300, 50)
        loser_sent.append(relay().relay(TENANT))

    notify.hook = meanwhile
    assert relay().relay(TENANT) == 350  # the holder looked again after releasing
    assert loser_sent == [0]
    for queue in (notify, siem):
        counts = _counts(queue)
        assert len(counts) == sum(counts.values()) == 350
    assert states.of(TENANT).outbox_rows() == []


def test_a_relay_killed_mid_row_is_resumed_after_its_lease_expires(world):
    states, notify, siem, retry, relay = world
    _commit(states, 0, 1000)
    dying = relay(lease_seconds=2)
    send = dying._send

    def send_then_die(events) -> None:
        send(events)
        raise SystemExit("killed after a send, before recording it")
    dying._send = send_then_die
    with pytest.raises(SystemExit):
        dying.relay(TENANT)
    assert relay().relay(TENANT) == 0  # the dead relay's lease is still live
    assert retry.take()[0][1] <= 3  # asked again for when it expires
    time.sleep(2.1)
    assert relay().relay(TENANT) == 1000  # from the last recorded Sent (0: chunk 1 again)
    for queue in (notify, siem):
        counts = _counts(queue)
        assert len(counts) == 1000  # nothing lost
        assert sum(counts.values()) - 1000 <= SEND_CHUNK  # the one unrecorded chunk
    assert states.of(TENANT).outbox_rows() == []


def test_a_relay_that_finds_nothing_takes_no_lease(world):
    states, notify, _, retry, relay = world
    assert relay().relay(TENANT) == 0
    assert notify.texts() == [] and retry.take() == []
    assert states.of(TENANT).take_relay_lease("next", 60)[0]  # free
