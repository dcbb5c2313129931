"""Two relays racing on one tenant's outbox on Azurite: each event goes out exactly once."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime

from shared.ingest.events import event_message, tracked
from shared.ingest.relay import Relay
from shared.messages import alert_events
from shared.model import Cursor
from shared.storage import tables
from shared.storage.ingest_state import IngestStates
from shared.storage.queues import EventQueue, RelayQueue

STAMP = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _alert(n: int) -> dict:
    return {"id": f"da{n:06d}", "title": f"Alert {n}", "severity": "High", "status": "New",
            "alertCreationTime": STAMP, "lastUpdateTime": STAMP}


def _drain(client) -> Counter:
    ids: Counter = Counter()
    while batch := list(client.receive_messages(messages_per_page=32, max_messages=32,
                                                visibility_timeout=60)):
        for message in batch:
            for event in alert_events(message.content):
                ids[event.event_id] += 1
            client.delete_message(message)
    return ids


def test_two_relays_racing_over_1000_events_send_each_once(storage_env):
    suffix = uuid.uuid4().hex[:10]
    states = IngestStates(tables.table(storage_env, f"RelayRace{suffix}"))
    queues = {name: tables.queue(storage_env, f"relay-race-{name}-{suffix}")
              for name in ("notify", "siem", "retry")}
    tenant = str(uuid.uuid4())
    state = states.of(tenant)
    for first in range(0, 1000, 200):  # five chunks' commits, as a burst makes them
        events = [event_message(tenant, "Contoso", _alert(n), STAMP, None,
                                tracked(_alert(n), STAMP)) for n in range(first, first + 200)]
        state.commit([], events, Cursor(STAMP, first + 200), state.cursor()[1], f"c{first}")
    relays = [Relay(states, EventQueue(queues["notify"]), EventQueue(queues["siem"]),
                    RelayQueue(queues["retry"])) for _ in range(2)]
    barrier, sent = threading.Barrier(2), []

    def run(relay: Relay) -> None:
        barrier.wait()
        sent.append(relay.relay(tenant))

    threads = [threading.Thread(target=run, args=(r,)) for r in relays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(sent) == 1000
    for name in ("notify", "siem"):
        ids = _drain(queues[name])
        assert len(ids) == 1000 and sum(ids.values()) == 1000, name
    assert state.outbox_rows() == []
    for client in queues.values():
        client.delete_queue()
    states.client.delete_table()
