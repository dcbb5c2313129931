"""The poison queues' contract, on Azurite and on the in-memory fake: messages taken in a
bounded batch, hidden while taken, back (with the same id and poison time) when a drain
died before removing them, gone once removed; a text that was never base64 read as it is.
And the PoisonLog row of a message recorded twice is one row."""

from __future__ import annotations

import base64
import time
import uuid

import pytest

from shared.storage import tables
from shared.storage.memory.ingest import MemoryPoisonLog
from shared.storage.memory.poison import MemoryPoisonQueue
from shared.storage.poison_log import PoisonLogRepository
from shared.storage.poison_queue import PoisonQueue


@pytest.fixture
def queue(backend):
    def real(storage):
        name = f"poison-test-{uuid.uuid4().hex[:12]}"
        tables.queue(storage, name)
        return PoisonQueue(storage.queue(name, base64=False))
    return backend.build(real, MemoryPoisonQueue)


@pytest.fixture
def poison(backend):
    return backend.repo(PoisonLogRepository, "Poison", MemoryPoisonLog)


def test_messages_are_taken_in_a_bounded_batch_and_hidden_while_taken(queue):
    for n in range(5):
        queue.put(f"message {n} \u00e9")
    first = queue.take(3, hide_seconds=30)
    assert [m.body for m in first] == [f"message {n} \u00e9" for n in range(3)]
    rest = queue.take(10, hide_seconds=30)
    assert [m.body for m in rest] == ["message 3 \u00e9", "message 4 \u00e9"]
    assert queue.take(10, hide_seconds=30) == []


def test_a_message_not_removed_comes_back_the_same_and_removed_is_gone(queue):
    queue.put("crashed before remove")
    (taken,) = queue.take(10, hide_seconds=1)
    time.sleep(1.3)
    (again,) = queue.take(10, hide_seconds=1)
    assert (again.message_id, again.body, again.poisoned_at) == \
        (taken.message_id, taken.body, taken.poisoned_at)
    queue.remove(taken)  # the first taker's late remove: refused quietly
    queue.remove(again)
    time.sleep(1.3)
    assert queue.take(10, hide_seconds=1) == []
    queue.remove(again)  # removed twice: fine


def test_more_than_one_request_of_messages_is_taken_up_to_the_limit(queue):
    for n in range(40):
        queue.put(str(n))
    assert [m.body for m in queue.take(35, hide_seconds=30)] == [str(n) for n in range(35)]


def test_a_message_that_was_never_base64_is_read_as_it_is(backend, queue):
    if backend.storage is None:
        pytest.skip("the fake holds text: there is no wire")
    queue.client.send_message("this is not base64 !!")
    queue.client.send_message(base64.b64encode(b"{\"a\": 1}").decode())
    assert [m.body for m in queue.take(10, 30)] == ["this is not base64 !!", '{"a": 1}']


def test_a_message_recorded_twice_is_one_poison_log_row(poison, queue):
    queue.put("{}")
    (message,) = queue.take(1, 30)
    name = f"q{uuid.uuid4().hex[:8]}"
    first = poison.add(name, message.body, "why", "", message.poisoned_at,
                       message_id=message.message_id)
    second = poison.add(name, message.body, "why, again", "", message.poisoned_at,
                        message_id=message.message_id)
    assert first == second
    assert [r["Reason"] for r in poison.recent(name)] == ["why, again"]
