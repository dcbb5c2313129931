"""The tenant directory kept exactly in step on Azurite: after a randomized run of registry
changes, with crashes before a transaction is sent and answers lost after it was applied
(the caller then retries, or not), and with two writers renaming tenants of one page at
once, the name pages equal a recount of the registry and the tenants needing attention
are exactly the registry's. The backfill builds it on a store written before it, resumed
after a crash midway, while the app renames a tenant."""

from __future__ import annotations

import contextlib
import random
import threading
import uuid

import pytest

from shared.config import get_settings
from shared.model import Tenant, TenantStatus
from shared.storage import batch, tables
from shared.storage import tenants as registry_module
from shared.storage.tenant_directory import needs_attention
from shared.storage.tenants import PARTITION, TenantRepository, attention
from tests.helpers import app_env


class Crash(Exception):
    pass


@pytest.fixture
def registry(storage_env):
    return TenantRepository(tables.table(storage_env, f"Dir{uuid.uuid4().hex[:12]}"))


def _listed(registry):
    return sorted((t.tenant_id, t.display_name, str(t.status)) for t in registry.directory())


def _recount(registry):
    return sorted((t.tenant_id, t.display_name, str(t.status)) for t in registry.all())


def _needing(registry):
    return [t.tenant_id for t in sorted(
        (t for t in registry.all() if needs_attention(t.status, t.consecutive_failures)),
        key=attention)]


def _crashing(monkeypatch, rng: random.Random, rate: float) -> None:
    real = batch.submit_transaction

    def submit(client, operations):
        ops = list(operations)
        roll = rng.random()
        if roll < rate / 2:
            raise Crash("died before sending")
        result = real(client, ops)
        if roll < rate:
            raise Crash("the answer was lost")
        return result

    monkeypatch.setattr(batch, "submit_transaction", submit)


def _change(registry, rng: random.Random, ids: list[str]) -> None:
    tid = rng.choice(ids)
    kind = rng.randrange(10)
    if kind == 0:
        registry.edit(tid, display_name=f"Renamed {rng.randrange(1000)} \u00e9")
    elif kind == 1:
        registry.pause(tid, "by the MSSP")
    elif kind == 2:
        registry.resume(tid, "by the MSSP")
    elif kind == 3:
        registry.stop(tid, rng.choice([TenantStatus.CONSENT_REVOKED,
                                       TenantStatus.UNAVAILABLE]), "stopped", "AADSTS65001")
    elif kind == 4:
        registry.reactivate(tid, "consent again")
    elif kind in (5, 6):
        registry.mark_failing(tid, "HTTP 503", rng.randrange(1, 5))
    elif kind == 7:
        registry.mark_fetched_ok(tid)
    elif kind == 8:
        tenant = registry.get(tid)
        tenant.display_name = f"Saved {rng.randrange(1000)}"
        registry.save(tenant)
    else:
        registry.needing_attention()  # a reader: removes the marks of the recovered


def test_directory_and_attention_equal_a_recount_after_random_changes_and_crashes(
        registry, monkeypatch):
    rng = random.Random(18)
    # ids over few pages, so that changes of one page meet
    ids = [f"{rng.choice('0a')}{uuid.uuid4().hex[1:8]}-{str(uuid.uuid4())[9:]}"
           for _ in range(12)]
    _crashing(monkeypatch, rng, 0.3)
    for n, tid in enumerate(ids):
        for _ in range(5):  # redelivered until it is in
            try:
                registry.add(Tenant(tid, f"Tenant {n}"))
                break
            except Crash:
                continue
            except Exception:  # AlreadyExists: the lost answer's add was in
                break
    crashes = 0
    for step in range(150):
        seed = rng.random()
        try:
            _change(registry, random.Random(seed), ids)
        except Crash:
            crashes += 1
            if rng.random() < 0.5:  # redelivered (the same change), or never
                with contextlib.suppress(Crash):
                    _change(registry, random.Random(seed), ids)
        if step % 50 == 49:
            monkeypatch.undo()
            assert _listed(registry) == _recount(registry)
            assert [t.tenant_id for t in registry.needing_attention()] == _needing(registry)
            _crashing(monkeypatch, rng, 0.3)
    monkeypatch.undo()
    assert crashes > 20
    assert len(_recount(registry)) == len(ids)
    assert _listed(registry) == _recount(registry)
    assert [t.tenant_id for t in registry.needing_attention()] == _needing(registry)


def test_two_writers_renaming_tenants_of_one_page_lose_nothing(registry):
    ids = [f"b{uuid.uuid4().hex[1:8]}-{str(uuid.uuid4())[9:]}" for _ in range(6)]
    for n, tid in enumerate(ids):
        registry.add(Tenant(tid, f"Tenant {n}"))

    def rename(part: list[str]) -> None:
        for round_ in range(4):
            for tid in part:
                registry.edit(tid, display_name=f"{tid[:4]} round {round_}")

    threads = [threading.Thread(target=rename, args=(ids[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _listed(registry) == _recount(registry)
    assert {name for _, name, _ in _listed(registry)} == {f"{t[:4]} round 3" for t in ids}


def test_the_backfill_builds_the_directory_of_a_store_from_before_it(registry, monkeypatch):
    """Rows written as the previous version wrote them (no directory), some failing."""
    old = []
    for n in range(20):
        tenant = Tenant(str(uuid.uuid4()), f"Old {n}",
                        TenantStatus.CONSENT_REVOKED if n % 7 == 0 else TenantStatus.ACTIVE,
                        consecutive_failures=n % 3)
        registry.client.upsert_entity(registry_module._to_entity(tenant))
        old.append(tenant)
    assert registry.directory() is None  # not complete: readers fall back
    assert len(registry.names()) == 20
    registry.add(Tenant(str(uuid.uuid4()), "New"))  # the app writes meanwhile
    assert registry.directory() is None

    pages = 0
    real_update, real_create = registry.client.update_entity, registry.client.create_entity

    def dies_on_the_fifth_page(write):
        def written(*args, **kwargs):
            nonlocal pages
            pages += 1
            if pages == 5:
                raise Crash("the backfill died")
            return write(*args, **kwargs)
        return written

    monkeypatch.setattr(registry.client, "update_entity", dies_on_the_fifth_page(real_update))
    monkeypatch.setattr(registry.client, "create_entity", dies_on_the_fifth_page(real_create))
    with pytest.raises(Crash):
        registry.rebuild_directory()
    monkeypatch.undo()
    assert registry.directory() is None  # not marked complete
    registry.edit(old[3].tenant_id, display_name="Renamed during the backfill")
    assert registry.rebuild_directory() == 21  # run again: all of it, idempotent
    assert _listed(registry) == _recount(registry)
    assert "Renamed during the backfill" in {n.display_name for n in registry.names()}
    assert [t.tenant_id for t in registry.needing_attention()] == _needing(registry)
    assert registry.rebuild_directory() == 21
    assert _listed(registry) == _recount(registry)
    rows = list(registry.client.query_entities("PartitionKey eq @pk",
                                               parameters={"pk": PARTITION}))
    assert len([r for r in rows if not r["RowKey"].startswith("~")]) == 21


def test_the_backfill_command_builds_the_directory_first(storage_env, monkeypatch, capsys):
    from shared.correlation.service import Indexed
    from shared.ops import backfill as backfill_job
    from tools import backfill

    registry = TenantRepository(tables.table(storage_env, tables.TENANTS))
    tenant = Tenant(str(uuid.uuid4()), "Before the directory")
    registry.client.upsert_entity(registry_module._to_entity(tenant))  # as the old version
    with contextlib.suppress(Exception):
        registry.client.delete_entity(PARTITION, "~names:~")
    for key, value in app_env(AzureWebJobsStorage=storage_env.connection_string).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    monkeypatch.setattr(backfill, "index_tenants", lambda storage: None)  # tested elsewhere
    monkeypatch.setattr(backfill, "correlate", lambda *a, **k: Indexed())  # so is this
    monkeypatch.setattr(backfill_job.Backfill, "run",
                        lambda self, restart=False: backfill_job.Report())
    assert backfill.main([]) == 0
    get_settings.cache_clear()
    assert "tenants listed" in capsys.readouterr().out
    assert tenant.tenant_id in {t.tenant_id for t in registry.directory()}
    assert _listed(registry) == _recount(registry)
