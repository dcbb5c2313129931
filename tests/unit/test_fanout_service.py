"""The fan-out on the in-memory fakes: one fetch message per due active tenant, none for
the throttled, pending or inactive, the ledger standing in for a write per tenant, and
one tenant's failed send never stopping the others."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from shared.ingest.fanout import Fanout
from shared.messages import FetchRequest
from shared.model import Tenant, TenantStatus
from shared.storage.memory.ingest import MemoryFanoutLedger, MemoryQueue
from shared.storage.memory.tenants import MemoryTenants
from shared.storage.queues import FetchQueue


def _world(count: int = 3):
    tenants, queue = MemoryTenants(), MemoryQueue()
    ids = [tenants.add(Tenant(str(uuid.uuid4()), f"T{n}")).tenant_id for n in range(count)]
    return ids, tenants, queue, Fanout(tenants, MemoryFanoutLedger(), FetchQueue(queue))


def _sent(queue: MemoryQueue) -> list[str]:
    return sorted(FetchRequest.parse(text).tenant_id for text, _ in queue.take())


def test_each_due_tenant_gets_one_message_then_is_pending():
    ids, tenants, queue, fanout = _world()
    tenants.add(Tenant(str(uuid.uuid4()), "Paused", status=TenantStatus.PAUSED))
    result = fanout.run()
    assert sorted(result.enqueued) == sorted(ids) == _sent(queue)
    again = fanout.run()
    assert (again.enqueued, again.pending) == ([], 3) and _sent(queue) == []
    assert all(tenants.get(t).fetch_queued_at is None for t in ids)  # no write per tenant


def test_a_finished_worker_makes_its_tenant_due_again():
    ids, tenants, queue, fanout = _world()
    fanout.run()
    queue.take()
    time.sleep(0.001)
    tenants.mark_fetched_ok(ids[1])  # clears its queued mark after the fan-out
    assert fanout.run().enqueued == [ids[1]] and _sent(queue) == [ids[1]]


def test_throttled_and_requeued_tenants_are_left_alone():
    ids, tenants, _, fanout = _world()
    tenants.mark_requeued(ids[0], datetime.now(UTC) + timedelta(minutes=5))
    tenants.mark_requeued(ids[1])  # a worker continues it itself
    result = fanout.run()
    assert (result.throttled, result.pending, result.enqueued) == (1, 1, [ids[2]])


def test_a_failing_send_does_not_stop_the_others_and_is_retried_next_tick():
    ids, _, queue, fanout = _world(5)
    real = queue.send_message

    def flaky(content: str, visibility_timeout: int | None = None) -> None:
        if ids[2] in content:
            raise ConnectionError("queue unreachable")
        real(content, visibility_timeout)

    queue.send_message = flaky  # type: ignore[method-assign]
    result = fanout.run()
    assert sorted(result.enqueued) == sorted(ids[:2] + ids[3:])
    assert list(result.failed) == [ids[2]] and "ConnectionError" in result.failed[ids[2]]
    queue.send_message = real  # type: ignore[method-assign]
    assert fanout.run().enqueued == [ids[2]]


def test_the_message_carries_the_tenant_as_read_so_an_idle_fetch_need_not_read_it():
    ids, tenants, queue, fanout = _world(1)
    tenants.edit(ids[0], display_name="Northwind", region="eu")
    tenants.mark_failing(ids[0], "timeout", 2)
    fanout.run()
    [(text, _)] = queue.take()
    seen = FetchRequest.parse(text).seen
    stored = tenants.get(ids[0])
    assert seen is not None and (seen.display_name, seen.region, seen.failures, seen.etag) \
        == ("Northwind", "eu", 2, stored.etag)
