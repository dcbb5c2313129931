"""Timer to rows through the local host running the real function_app.py."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid

import pytest

from devhost.config import HostConfig, QueueOptions
from devhost.host import Host
from shared import services
from shared.config import get_settings
from shared.model import Tenant, TenantStatus
from shared.storage import tables
from shared.storage.tenants import TenantRepository
from tests.conftest import ROOT
from tests.integration.devhost_fixtures import wait_for
from tests.integration.ingest_fixtures import ingest_env


@pytest.fixture
def app_host(simulator, sim, storage_env, monkeypatch):
    """function_app.app on the local host: fan-out every 2 s, quick retries."""
    env = ingest_env(simulator, storage_env, FETCH_SCHEDULE="*/2 * * * * *",
                     FETCH_PAGE_SIZE="50", DEVHOST_FUNCTION_KEY="k", DEVHOST_MASTER_KEY="m")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for cached in (get_settings, services.ingestor, services.fanout, services.relay,
                   services.poison_log):
        cached.cache_clear()
    for name in [m for m in sys.modules if m == "function_app" or m.startswith("functions")]:
        monkeypatch.delitem(sys.modules, name)
    config = dataclasses.replace(HostConfig.load(ROOT), queues=QueueOptions(
        max_polling_interval=0.2, visibility_timeout=0, max_dequeue_count=3))
    # a fresh registry partition per test: other tests' tenants are paused first
    repo = TenantRepository(tables.table(storage_env, tables.TENANTS))
    for tenant in repo.with_status(TenantStatus.ACTIVE):
        repo.set_status(tenant.tenant_id, TenantStatus.PAUSED, "isolated by a test")
    host = Host(ROOT, "function_app:app", http_port=0, host_id="h" + uuid.uuid4().hex[:8],
                config=config)
    host.start()
    yield host, repo
    host.stop()
    for cached in (get_settings, services.ingestor, services.fanout, services.relay,
                   services.poison_log):
        cached.cache_clear()


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
