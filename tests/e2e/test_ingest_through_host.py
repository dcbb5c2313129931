"""Timer to rows through the local host running the real function_app.py."""

from __future__ import annotations

import time

from shared.model import Tenant, TenantStatus
from shared.storage import tables
from tests.integration.devhost_fixtures import wait_for


def _seed(sim, simulator, repo, name: str, alerts: int) -> str:
    created = sim.add_tenant(name, consent=[simulator.config.client_id])
    sim.generate(created["id"], alerts, age_seconds=300)
    repo.add(Tenant(created["id"], name))
    return created["id"]


def _stored(storage, tenant_id: str) -> int:
    client = tables.table(storage, tables.ALERTS)
    return sum(1 for e in client.query_entities("PartitionKey eq @pk",
                                                parameters={"pk": tenant_id},
                                                select=["RowKey"]) if "%~" not in e["RowKey"])


def test_timer_to_rows_for_several_tenants_and_one_broken_does_not_stop_four(
        app_host, simulator, sim, storage_env):
    _, repo = app_host
    healthy = [_seed(sim, simulator, repo, f"Flow {i} Co", 20 + 30 * i) for i in range(4)]
    broken = _seed(sim, simulator, repo, "Broken Co", 10)
    sim.fault(broken, "status", status=500, count=1000)

    wait_for(lambda: all(_stored(storage_env, t) == 20 + 30 * i
                         for i, t in enumerate(healthy)), timeout=60)
    assert _stored(storage_env, broken) == 0
    # the broken tenant's message failed maxDequeueCount times and was recorded
    poison = tables.table(storage_env, tables.POISON_LOG)
    records = wait_for(lambda: [r for r in poison.query_entities(
        "PartitionKey eq @pk", parameters={"pk": tables.FETCH_QUEUE}) if r["Tenant"] == broken],
        timeout=60)
    assert "every attempt" in records[0]["Reason"] and "500" in records[0]["Reason"]
    assert broken in records[0]["Body"]
    saved = repo.get(broken)
    assert saved.consecutive_failures >= 3 and saved.status == TenantStatus.ACTIVE

    # new alerts keep flowing for the healthy ones while the broken one stays broken
    extra = sim.generate(healthy[0], 7)["ids"]
    wait_for(lambda: _stored(storage_env, healthy[0]) == 20 + 7, timeout=30)
    assert extra
    # events reached both queues through the relay function
    notify = tables.queue(storage_env, tables.NOTIFY_QUEUE)
    wait_for(lambda: notify.get_queue_properties().approximate_message_count > 0, timeout=20)


def test_paused_and_revoked_tenants_are_not_fanned_out(app_host, simulator, sim, storage_env):
    _, repo = app_host
    paused = _seed(sim, simulator, repo, "Paused Co", 5)
    repo.set_status(paused, TenantStatus.PAUSED, "by the MSSP")
    live = _seed(sim, simulator, repo, "Live Co", 5)
    wait_for(lambda: _stored(storage_env, live) == 5, timeout=30)
    time.sleep(2.5)
    assert _stored(storage_env, paused) == 0
    assert sim.counters()["tenants"][paused]["calls"] == 0
