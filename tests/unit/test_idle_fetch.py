"""An idle fetch is cheap and still safe (on the fakes): the tenant as the fan-out read it,
the first call counted with the lease, a lease left to lapse, the overlap classified
without the version index; and every guarantee kept when the cheap path does not hold
(paused since the fan-out, a lease lapsed and taken over, something new)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.ingest.fanout import seen
from shared.ingest.hold import IDLE_LEASE_SECONDS
from shared.ingest.worker import Ingestor, IngestStores
from shared.messages import FetchRequest
from shared.model import TenantStatus
from shared.storage.memory.ingest import MemoryIngestState
from tests.unit.test_ingestor import World


def _fanned_out(world: World) -> FetchRequest:
    """The message the fan-out sends for the world's tenant now."""
    return FetchRequest(world.tenant.tenant_id,
                        seen=seen(world.tenants.get(world.tenant.tenant_id)))


def _index_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    loads: list[int] = []
    real = MemoryIngestState.load_index

    def counted(self, days, into=None):
        loads.append(1)
        return real(self, days, into)

    monkeypatch.setattr(MemoryIngestState, "load_index", counted)
    return loads


def _other_ingestor(world: World) -> Ingestor:
    """A second worker process on the same storage."""
    return Ingestor(world.settings, world.tokens, world.defender, IngestStores(
        tenants=world.tenants, alerts=world.alerts, states=world.states, runs=world.runs,
        app_health=world.app_health, fetch_queue=world.ingestor.fetch_queue,
        relay_queue=world.ingestor.relay_queue, notices=world.ingestor.notices))


@pytest.fixture
def world() -> World:
    return World(FETCH_OVERLAP_SECONDS="300")


def test_an_idle_run_on_the_fanouts_tenant_reads_no_tenant_and_keeps_health(world,
                                                                             monkeypatch):
    world.add_alerts(5)
    world.fetch()
    reads: list[str] = []
    real_get = world.tenants.get
    monkeypatch.setattr(world.tenants, "get", lambda tid: reads.append(tid) or real_get(tid))
    loads = _index_loads(monkeypatch)
    request = _fanned_out(world)
    before = world.tenants.get(world.tenant.tenant_id).last_success_at
    reads.clear()
    run = world.ingestor.run(request)
    assert (run.outcome, run.new, run.changed, run.unchanged) == ("success", 0, 0, 5)
    assert reads == [] and loads == []  # no tenant read, no version index read
    assert world.tenants.get(world.tenant.tenant_id).last_success_at > before
    minutes, _ = world.states.of(world.tenant.tenant_id).calls()
    assert sum(minutes.values()) == 2  # the idle call counted with the lease
    world.relay_requested()
    assert len(world.events()) == 5  # the first run's, none of the idle one


def test_a_tenant_paused_after_the_fanout_is_not_marked_nor_stored(world):
    world.add_alerts(3)
    request = _fanned_out(world)
    world.tenants.pause(world.tenant.tenant_id, "by the MSSP")
    run = world.ingestor.run(request)
    assert run.outcome == "skipped" and run.error == "tenant is paused"
    world.relay_requested()
    assert world.alerts.rows == {} and world.events() == []
    tenant = world.tenants.get(world.tenant.tenant_id)
    assert tenant.status == TenantStatus.PAUSED and tenant.last_success_at is None
    assert world.states.of(world.tenant.tenant_id).acquire_lease("other", 60)[0]


def test_an_idle_run_paused_after_the_fanout_writes_no_health(world):
    world.add_alerts(2)
    world.fetch()
    request = _fanned_out(world)
    before = world.tenants.get(world.tenant.tenant_id).last_success_at
    world.tenants.pause(world.tenant.tenant_id, "by the MSSP")
    assert world.ingestor.run(request).outcome == "skipped"
    assert world.tenants.get(world.tenant.tenant_id).last_success_at == before


def test_a_run_that_finds_something_reads_the_tenant_before_it_writes(world):
    world.add_alerts(2)
    world.fetch()
    world.add_alerts(3, start=2)
    request = _fanned_out(world)
    world.tenants.edit(world.tenant.tenant_id, display_name="Contoso Renamed")
    run = world.ingestor.run(request)
    assert (run.outcome, run.new) == ("success", 3)
    world.relay_requested()
    assert [e.tenant_name for e in world.events()] == ["Contoso"] * 2 + [
        "Contoso Renamed"] * 3  # the name read before writing, not the fan-out's
    # a run that wrote releases its lease
    assert world.states.of(world.tenant.tenant_id).acquire_lease("other", 60)[0]


def test_an_idle_runs_lease_lapses_for_others_and_is_retaken_by_its_process(world):
    world.add_alerts(2)
    world.fetch()
    assert world.fetch().outcome == "success"  # idle: its lease left to lapse
    assert world.fetch().outcome == "success"  # the same process takes it over
    other = _other_ingestor(world)
    assert other.run(_fanned_out(world)).outcome == "busy"
    lease, _ = world.states.of(world.tenant.tenant_id)._value("lease")
    # it lapses within IDLE_LEASE_SECONDS
    assert lease["Until"] <= datetime.now(UTC) + timedelta(seconds=IDLE_LEASE_SECONDS)


def test_a_run_whose_lease_lapsed_and_was_taken_writes_nothing(world, monkeypatch):
    world.add_alerts(3)
    state = world.states.of(world.tenant.tenant_id)
    real = MemoryIngestState.open

    def lapsing(self, owner, seconds, charge=None):
        opening = real(self, owner, -1, charge)  # lapsed at once...
        assert state.acquire_lease("other", 60)[0]  # ...and taken by another worker
        return opening

    monkeypatch.setattr(MemoryIngestState, "open", lapsing)
    run = world.fetch()
    assert run.outcome == "conflict"
    world.relay_requested()
    assert world.alerts.rows == {} and world.events() == []
    assert state.cursor() == (None, None)


def test_the_overlap_with_an_unknown_version_reads_the_index(world, monkeypatch):
    world.add_alerts(4)
    world.fetch()
    world.add_alerts(1, start=3, status="InProgress",
                     lastUpdateTime=(world.now + timedelta(seconds=3, milliseconds=1)
                                     ).isoformat())
    loads = _index_loads(monkeypatch)
    run = world.ingestor.run(_fanned_out(world))
    assert (run.outcome, run.changed, run.unchanged) == ("success", 1, 3)
    assert loads  # not all known: classified on the index
    world.relay_requested()
    assert [e.alert["status"] for e in world.events()][-1:] == ["InProgress"]
    loads.clear()
    assert world.ingestor.run(_fanned_out(world)).unchanged == 4 and loads == []


def test_a_busy_run_in_the_same_process_is_told_so(world):
    world.ingestor.running.add(world.tenant.tenant_id)
    assert world.fetch().outcome == "busy" and world.defender.calls == 0
