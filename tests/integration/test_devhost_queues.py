"""Queue trigger semantics of the local host against a real Azurite."""

from __future__ import annotations

import base64
import json
import time

from azure.core.exceptions import ResourceNotFoundError

from tests.integration.devhost_fixtures import HostFactory, wait_for


def _drain(factory: HostFactory, suffix: str) -> list[str]:
    """Every message text (as on the wire) currently in a queue, removed."""
    client = factory.storage.queue(factory.queue_name(suffix), base64=False)
    found = []
    try:
        for message in client.receive_messages(messages_per_page=32, max_messages=32):
            found.append(message.content)
            client.delete_message(message)
    except ResourceNotFoundError:
        pass
    return found


def _collect(factory: HostFactory, suffix: str, expected: int) -> list[str]:
    """Wait until `expected` messages have been taken from a queue; fail on more."""
    found: list[str] = []
    wait_for(lambda: found.extend(_drain(factory, suffix)) or len(found) >= expected)
    time.sleep(0.3)
    found.extend(_drain(factory, suffix))
    assert len(found) == expected
    return found


def _count(factory: HostFactory, suffix: str) -> int:
    client = factory.storage.queue(factory.queue_name(suffix), base64=False)
    try:
        return client.get_queue_properties().approximate_message_count
    except ResourceNotFoundError:
        return 0


def test_message_failing_every_time_ends_in_poison_after_max_dequeue_count(hosts):
    _, app = hosts.start(maxDequeueCount=4)
    hosts.storage.queue(hosts.queue_name("fail")).send_message("payload-\u00e9")

    poisoned = _collect(hosts, "fail-poison", 1)
    # the poison copy is the original text, base64 as it was on the wire
    assert base64.b64decode(poisoned[0]).decode() == "payload-\u00e9"
    assert [count for _, count, _ in app.calls["always_fails"]] == [1, 2, 3, 4]
    time.sleep(0.5)
    assert len(app.calls["always_fails"]) == 4
    assert _count(hosts, "fail") == 0


def test_message_succeeding_on_third_try_is_processed_once(hosts):
    _, app = hosts.start()
    hosts.storage.queue(hosts.queue_name("third")).send_message(json.dumps({"n": 7}))

    wait_for(lambda: app.calls.get("third_time_done"))
    time.sleep(0.6)
    assert app.calls["third_time_done"] == [{"n": 7}]
    assert [count for _, count in app.calls["third_time"]] == [1, 2, 3]
    # output messages are written once, by the run that succeeded, base64 on the wire
    outputs = sorted(base64.b64decode(m).decode() for m in _collect(hosts, "third-out", 2))
    assert outputs == ['first:{"n": 7}', "second"]
    assert _count(hosts, "third") == 0


def test_visibility_timeout_delays_the_retry(hosts):
    _, app = hosts.start(maxDequeueCount=2, visibilityTimeout="00:00:02")
    hosts.storage.queue(hosts.queue_name("fail")).send_message("slowly")

    wait_for(lambda: _count(hosts, "fail-poison"), timeout=30, every=0.02)
    poisoned_at = time.monotonic()
    first, second = app.calls["always_fails"]
    assert second[1] == 2
    assert second[2] - first[2] >= 1.9
    # the last failure moves it to poison at once, not after another visibility timeout
    assert poisoned_at - second[2] < 1.5


def test_message_that_is_not_base64_goes_straight_to_poison(hosts):
    _, app = hosts.start()
    raw = hosts.storage.queue(hosts.queue_name("fail"), base64=False)
    raw.send_message("this is not base64 !!")

    assert wait_for(lambda: _drain(hosts, "fail-poison")) == ["this is not base64 !!"]
    assert "always_fails" not in app.calls


def test_plain_text_encoding_when_host_json_says_none(hosts):
    _, app = hosts.start(messageEncoding="none")
    raw = hosts.storage.queue(hosts.queue_name("third"), base64=False)
    raw.send_message('{"plain": true}')

    wait_for(lambda: app.calls.get("third_time_done"))
    assert app.calls["third_time_done"] == [{"plain": True}]
    assert sorted(_collect(hosts, "third-out", 2)) == ['first:{"plain": true}', "second"]


def test_message_whose_worker_died_too_often_is_poisoned_without_running(hosts):
    host, app = hosts.create(maxDequeueCount=4)
    client = hosts.storage.queue(hosts.queue_name("third"))
    client.send_message("crashed")
    for _ in range(4):  # four workers took it and died without settling it
        wait_for(lambda: list(client.receive_messages(visibility_timeout=1, max_messages=1)),
                 timeout=5)
        time.sleep(1.1)
    host.start()

    poisoned = wait_for(lambda: _drain(hosts, "third-poison"))
    assert [base64.b64decode(p).decode() for p in poisoned] == ["crashed"]
    assert "third_time" not in app.calls


def test_batch_size_and_threshold_bound_concurrency(hosts):
    _, app = hosts.start(batchSize=4, newBatchThreshold=2)
    client = hosts.storage.queue(hosts.queue_name("slow"))
    for i in range(12):
        client.send_message(f"m{i}")

    wait_for(lambda: len(app.calls.get("slow", [])) == 12, timeout=30)
    assert sorted(app.calls["slow"]) == sorted(f"m{i}" for i in range(12))
    assert 2 <= app.peak <= 4 + 2


def test_a_stop_hands_held_messages_back_at_once(hosts, monkeypatch):
    """Ctrl-C under load: the runs still going after the grace, and the messages fetched
    but not started, are visible again at once; none is settled late, none poisoned."""
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "2")
    host, app = hosts.start(batchSize=16)
    client = hosts.storage.queue(hosts.queue_name("hang"))
    for i in range(16):
        client.send_message(f"h{i}")
    raw = hosts.storage.queue(hosts.queue_name("hang"), base64=False)
    wait_for(lambda: not list(raw.peek_messages(max_messages=32)))  # one batch: 2 running
    started = time.monotonic()
    host.stop(grace=0.2)
    assert time.monotonic() - started < 2
    assert len(list(raw.peek_messages(max_messages=32))) == 16  # visible, none waits a lease
    time.sleep(3.5)  # the abandoned runs end meanwhile: they do not settle what they gave back
    assert len(app.calls.get("hang", [])) <= 2  # ran on, but left the message be
    assert _count(hosts, "hang") == 16
    assert _count(hosts, "hang-poison") == 0
