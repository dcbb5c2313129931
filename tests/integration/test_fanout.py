"""The fan-out: one message per due tenant, no pile-up, failures isolated."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.messages import BadMessage, FetchRequest
from shared.model import Tenant, TenantStatus
from shared.services import fanout_on, poison_log_on
from shared.storage import tables

# every test runs on the lean queue sender and on the SDK's (STORAGE_FAST_PATHS=false)
pytestmark = pytest.mark.usefixtures("fast_paths")


def _fetch_messages(storage) -> list[str]:
    client = tables.queue(storage, tables.FETCH_QUEUE)
    found = []
    while batch := list(client.receive_messages(messages_per_page=32, max_messages=32)):
        for message in batch:
            found.append(FetchRequest.parse(message.content).tenant_id)
            client.delete_message(message)
    return found


def test_one_message_per_due_tenant_and_no_pile_up(storage_env, registry):
    _fetch_messages(storage_env)
    now = datetime.now(UTC)
    ids = [str(uuid.uuid4()) for _ in range(6)]
    for i, tenant_id in enumerate(ids):
        registry.add(Tenant(tenant_id, f"T{i}"))
    registry.set_status(ids[4], TenantStatus.CONSENT_REVOKED, "app_not_found_in_tenant")
    registry.merge(ids[5], throttled_until=now + timedelta(minutes=5))
    fanout = fanout_on(storage_env)

    first = fanout.run()
    assert sorted(first.enqueued) == sorted(ids[:4])
    assert first.throttled == 1
    second = fanout.run(past_due=True)  # the next tick, before any worker ran
    assert second.enqueued == [] and second.pending == 4
    assert sorted(_fetch_messages(storage_env)) == sorted(ids[:4])

    registry.merge(ids[0], fetch_queued_at=None)  # a worker finished with it
    assert fanout.run().enqueued == [ids[0]]
    _fetch_messages(storage_env)


def test_a_failing_send_does_not_stop_the_others(storage_env, registry, monkeypatch):
    ids = [str(uuid.uuid4()) for _ in range(5)]
    for tenant_id in ids:
        registry.add(Tenant(tenant_id, "x"))
    fanout = fanout_on(storage_env)
    real = fanout.queue.sender.send_message

    def flaky(content, **kwargs):
        if ids[2] in content:
            raise ConnectionError("queue unreachable")
        return real(content, **kwargs)

    monkeypatch.setattr(fanout.queue.sender, "send_message", flaky)
    result = fanout.run()
    assert sorted(result.enqueued) == sorted(ids[:2] + ids[3:])
    assert list(result.failed) == [ids[2]]
    assert registry.get(ids[2]).fetch_queued_at is None  # tried again next tick
    _fetch_messages(storage_env)


@pytest.mark.parametrize(("body", "reason"), [
    ("not json", "not JSON"),
    ('{"v": 2, "type": "fetch", "tenant": "x"}', "version"),
    ('{"v": 1, "type": "relay", "tenant": "7f1c2a4e-1b2c-4d5e-8f90-123456789abc"}', "fetch"),
    ('{"v": 1, "type": "fetch", "tenant": "nope"}', "GUID"),
])
def test_bad_messages_are_refused_with_a_reason(body, reason):
    with pytest.raises(BadMessage, match=reason):
        FetchRequest.parse(body)


def test_poison_log_keeps_the_message_and_charges_the_tenant(storage_env, registry):
    tenant_id = str(uuid.uuid4())
    registry.add(Tenant(tenant_id, "Poisoned Co"))
    registry.merge(tenant_id, last_error="DefenderError: 500", fetch_queued_at=datetime.now(UTC))
    log = poison_log_on(storage_env)
    body = FetchRequest(tenant_id).to_message()
    log.record("fetch-requests", body, "fetch failed on every attempt")
    (row,) = [r for r in log.recent("fetch-requests") if r["Tenant"] == tenant_id]
    assert json.loads(row["Body"])["tenant"] == tenant_id
    assert row["Reason"] == "fetch failed on every attempt; last error: DefenderError: 500"
    saved = registry.get(tenant_id)
    assert saved.last_error.startswith("fetch failed") and saved.fetch_queued_at is None
