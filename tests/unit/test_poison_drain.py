"""The poison drain on the in-memory fakes: every message of every poison queue recorded
once with its queue's reason and charged to its tenant, then removed; a bounded batch a
run; a run that dies between the record and the remove records the same row again, never
a second one; one queue failing does not stop the others."""

from __future__ import annotations

import uuid

import pytest

from shared.messages import FetchRequest
from shared.model import Tenant
from shared.ops.poison import PoisonDrain, PoisonLog, PoisonSource
from shared.storage.memory.ingest import MemoryPoisonLog
from shared.storage.memory.poison import MemoryPoisonQueue
from shared.storage.memory.tenants import MemoryTenants
from shared.storage.poison_queue import message_text


class Crash(Exception):
    pass


class DiesBeforeRemove(MemoryPoisonQueue):
    def remove(self, message):
        raise Crash()


def _drain(**queues: MemoryPoisonQueue) -> tuple[PoisonDrain, MemoryPoisonLog, MemoryTenants]:
    rows, tenants = MemoryPoisonLog(), MemoryTenants()
    sources = [PoisonSource(name, q, lambda _body, name=name: f"{name} gave up") for name, q in
               queues.items()]
    return PoisonDrain(PoisonLog(rows, tenants), sources, per_queue=3, hide_seconds=0), \
        rows, tenants


def test_each_message_is_recorded_with_its_queue_reason_charged_and_removed():
    fetch, notify = MemoryPoisonQueue(), MemoryPoisonQueue()
    drain, rows, tenants = _drain(fetch=fetch, notify=notify)
    tenant = tenants.add(Tenant(str(uuid.uuid4()), "Contoso"))
    tenants.mark_failing(tenant.tenant_id, "HTTP 500", 5)
    fetch.put(FetchRequest(tenant.tenant_id).to_message())
    notify.put("not json")
    assert drain.run() == {"fetch": 1, "notify": 1}
    (kept,) = rows.recent("fetch")
    assert kept["Tenant"] == tenant.tenant_id
    assert kept["Reason"] == "fetch gave up; last error: HTTP 500"
    assert tenants.get(tenant.tenant_id).last_error == kept["Reason"]
    assert [r["Body"] for r in rows.recent("notify")] == ["not json"]
    assert fetch.messages == notify.messages == []
    assert drain.run() == {"fetch": 0, "notify": 0}


def test_a_run_takes_a_bounded_batch_and_the_next_takes_the_rest():
    fetch = MemoryPoisonQueue()
    drain, rows, _ = _drain(fetch=fetch)
    for n in range(5):
        fetch.put(f"m{n}")
    assert drain.run() == {"fetch": 3}
    assert drain.run() == {"fetch": 2}
    assert sorted(r["Body"] for r in rows.recent("fetch")) == [f"m{n}" for n in range(5)]


def test_a_run_that_dies_between_record_and_remove_records_the_same_row_again():
    dying = DiesBeforeRemove()
    drain, rows, tenants = _drain(fetch=dying)
    tenant = tenants.add(Tenant(str(uuid.uuid4()), "Contoso"))
    tenants.mark_failing(tenant.tenant_id, "HTTP 500", 5)
    dying.put(FetchRequest(tenant.tenant_id).to_message())
    with pytest.raises(Crash):
        drain.run()
    first = rows.recent("fetch")
    # the message comes back (hidden 0 s here) and the next run, alive, removes it
    healthy = MemoryPoisonQueue()
    healthy.messages = dying.messages
    drain.sources = [PoisonSource("fetch", healthy, lambda _body: "fetch gave up")]
    assert drain.run() == {"fetch": 1}
    assert rows.recent("fetch") == first  # one record, the same, reason included
    assert healthy.messages == []


def test_one_queue_failing_does_not_stop_the_others():
    broken, notify = DiesBeforeRemove(), MemoryPoisonQueue()
    drain, rows, _ = _drain(broken=broken, notify=notify)
    broken.put("x")
    notify.put("y")
    with pytest.raises(Crash):
        drain.run()
    assert [r["Body"] for r in rows.recent("notify")] == ["y"] and notify.messages == []


def test_message_text_decodes_base64_and_keeps_anything_else():
    assert message_text("eyJhIjogMX0=") == '{"a": 1}'
    assert message_text("this is not base64 !!") == "this is not base64 !!"


def test_the_app_drains_poison_queues_from_a_timer_not_queue_triggers(monkeypatch):
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "function_app" or m.startswith("functions")]:
        monkeypatch.delitem(sys.modules, name)  # a fresh app: get_functions() runs once
    app = importlib.import_module("function_app").app
    bindings = {f.get_function_name(): f.get_bindings() for f in app.get_functions()}
    triggered = {b.queue_name for bs in bindings.values() for b in bs
                 if b.type == "queueTrigger"}
    assert triggered and not any(q.endswith("-poison") for q in triggered)
    (timer,) = bindings["poison_drain"]
    assert timer.type == "timerTrigger" and timer.schedule == "%POISON_DRAIN_SCHEDULE%"


def test_a_settling_source_settles_each_message_after_its_record_and_again_after_a_crash():
    """The bulk queue's source fails the job's pending alerts (bulk give_up, idempotent);
    a settle that fails leaves the message to be recorded (same row) and settled again."""
    bulk, settled = MemoryPoisonQueue(), []
    rows, tenants = MemoryPoisonLog(), MemoryTenants()
    failing = [True]

    def settle(body: str, reason: str) -> None:
        settled.append((body, reason))
        if failing and failing.pop():
            raise Crash()

    drain = PoisonDrain(PoisonLog(rows, tenants), [PoisonSource(
        "bulk", bulk, lambda _body: "bulk gave up", settle)], per_queue=3, hide_seconds=0)
    bulk.put("part of job 1")
    with pytest.raises(Crash):
        drain.run()
    assert len(rows.recent("bulk")) == 1 and len(bulk.messages) == 1  # kept for the retry
    assert drain.run() == {"bulk": 1}
    assert settled == [("part of job 1", "bulk gave up")] * 2
    assert len(rows.recent("bulk")) == 1 and bulk.messages == []
