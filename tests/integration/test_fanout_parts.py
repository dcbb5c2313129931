"""The fan-out's lean queue sender and its run ledger, against real Azurite."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import AccountSasPermissions, ResourceTypes, generate_account_sas

from shared.ingest.fanout import Fanout, due
from shared.ingest.worker import PENDING_SECONDS
from shared.messages import FetchRequest
from shared.model import Tenant
from shared.services import fanout_on
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.fanout_ledger import FanoutLedger
from shared.storage.queue_sender import QueueSender, QueueSendError, sender


def _three_due(storage_env, registry) -> tuple[list[str], Fanout]:
    """Three new active tenants, a fan-out, and an empty fetch queue."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for tenant_id in ids:
        registry.add(Tenant(tenant_id, "x"))
    _drain(tables.queue(storage_env, tables.FETCH_QUEUE))
    return ids, fanout_on(storage_env)


def _drain(client) -> list[str]:
    found = []
    while messages := list(client.receive_messages(messages_per_page=32, max_messages=32)):
        for message in messages:
            found.append(message.content)
            client.delete_message(message)
    return found


def test_sent_messages_read_back_through_the_sdk_base64_policy(storage_env, fast_paths):
    name = f"sender-{uuid.uuid4().hex[:8]}"
    client = tables.queue(storage_env, name)
    put = sender(storage_env, name)
    assert isinstance(put, QueueSender) == fast_paths
    bodies = [FetchRequest(str(uuid.uuid4())).to_message(), '{"odd": "<&>\' ✓ \\u0000"}']
    for body in bodies:
        put.send_message(body)
    put.send_message("later", visibility_timeout=60)
    assert sorted(_drain(client)) == sorted(bodies)  # "later" is not visible yet
    assert client.get_queue_properties().approximate_message_count == 1


def test_a_refused_put_raises_with_the_status(storage_env):
    sender = QueueSender(storage_env, f"missing-{uuid.uuid4().hex[:8]}")  # never created
    with pytest.raises(QueueSendError) as caught:
        sender.send_message("x")
    assert caught.value.status == 404


def test_the_sender_reconnects_after_the_server_drops_its_connection(storage_env):
    name = f"sender-{uuid.uuid4().hex[:8]}"
    client = tables.queue(storage_env, name)
    sender = QueueSender(storage_env, name)
    sender.send_message("one")
    sender._local.conn.sock.close()  # as if Azure closed the kept-alive connection
    sender.send_message("two")
    assert sorted(_drain(client)) == ["one", "two"]


def test_ledger_rows_hold_many_tenants_and_expire(storage_env):
    client = tables.table(storage_env, tables.FANOUT_LEDGER)
    ledger = FanoutLedger(client)
    now = datetime.now(UTC) + timedelta(days=3650)  # a time of its own, apart from others
    ids = [str(uuid.uuid4()) for _ in range(50_000)]  # more than one row holds
    earlier = now - timedelta(minutes=20)
    ledger.record(earlier, ids[:10])
    ledger.record(now, ids[:10])  # a run records as it goes: the list only grows
    ledger.record(now, ids)
    marks = ledger.recent(now - timedelta(seconds=PENDING_SECONDS))
    assert {t: marks[t] for t in ids} == dict.fromkeys(ids, now)
    assert ledger.recent(now + timedelta(seconds=1)) == {}
    assert all(ledger.recent(earlier)[t] == now for t in ids[:10])  # the latest run wins
    ledger.prune(now - timedelta(minutes=15))
    left = [r["At"] for r in client.query_entities("PartitionKey eq 'runs'", select=["At"])]
    assert earlier not in left and left.count(now) == 2


def test_due_combines_the_ledger_with_the_tenant_row():
    now = datetime.now(UTC)
    tenant = Tenant(str(uuid.uuid4()), "T")
    recently = now - timedelta(minutes=1)
    assert due(tenant, now) == ""
    assert due(tenant, now, recently) == "pending"
    assert due(tenant, now, now - timedelta(seconds=PENDING_SECONDS + 1)) == ""
    tenant.fetch_cleared_at = now  # a worker finished after that fan-out
    assert due(tenant, now, recently) == ""
    tenant.fetch_queued_at = now  # ... and re-queued itself (a continuation)
    assert due(tenant, now, recently) == "pending"
    tenant.throttled_until = now + timedelta(minutes=1)
    assert due(tenant, now, recently) == "throttled"


def test_fanout_marks_only_what_it_sent_and_a_finished_worker_clears_it(storage_env,
                                                                        registry, fast_paths):
    ids, fanout = _three_due(storage_env, registry)
    assert sorted(fanout.run().enqueued) == sorted(ids)
    assert fanout.run().pending == 3
    assert all(registry.get(t).fetch_queued_at is None for t in ids)  # no write per tenant
    time.sleep(0.01)
    registry.merge_many([{"RowKey": ids[1], "fetch_queued_at": None}])  # worker finished
    assert registry.get(ids[1]).fetch_cleared_at is not None
    assert fanout.run().enqueued == [ids[1]]
    assert len(_drain(tables.queue(storage_env, tables.FETCH_QUEUE))) == 4


def test_the_sender_with_a_sas_connection_string(storage_env):
    name = f"sas-{uuid.uuid4().hex[:8]}"
    client = tables.queue(storage_env, name)
    sas = generate_account_sas(client.account_name, client.credential.account_key,
                               ResourceTypes(object=True), AccountSasPermissions(add=True),
                               datetime.now(UTC) + timedelta(hours=1))
    endpoint = client.url.rsplit("/", 1)[0]
    conn = StorageConnection.from_env(
        {"S": f"QueueEndpoint={endpoint};SharedAccessSignature={sas}"}, "S")
    QueueSender(conn, name).send_message("via a SAS")
    assert _drain(client) == ["via a SAS"]


def test_a_registry_read_failing_part_way_still_marks_what_was_sent(storage_env, registry,
                                                                    monkeypatch, fast_paths):
    _, fanout = _three_due(storage_env, registry)
    real = fanout.tenants.with_status

    def broken(*args, **kwargs):
        rows = real(*args, **kwargs)
        yield next(rows)
        yield next(rows)
        raise ConnectionError("registry unreachable")

    monkeypatch.setattr(fanout.tenants, "with_status", broken)
    with pytest.raises(ConnectionError):
        fanout.run()
    monkeypatch.setattr(fanout.tenants, "with_status", real)
    second = fanout.run()
    assert second.pending == 2 and len(second.enqueued) == 1
    assert len(_drain(tables.queue(storage_env, tables.FETCH_QUEUE))) == 3
