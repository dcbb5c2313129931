"""The AlertIndex kept in step with the Alerts table by the relay, on the fakes: a seeded
random run of new alerts, updates (moving `lastUpdateTime`, across days too),
redeliveries, and failures injected at any write of the fetch or of the relay (rows
stored, chunk committed, lease renewed, index put, old entries removed, event sent,
chunk recorded). Once every tenant is fetched and relayed to the end, the index IS the
recomputation from the Alerts table: one entry per alert, at its stored version, with
its columns."""

from __future__ import annotations

import contextlib
import random
import uuid
from datetime import timedelta

import pytest

from shared.ingest.index_feed import IndexFeed
from shared.ingest.relay import Relay
from shared.model import Tenant
from shared.portal.queries import AlertFilter, search_alerts
from shared.storage.alert_index import backfill, entry_of, key_of
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.queues import EventQueue
from tests.unit.test_ingestor import World, _alert

FAULTS = [("alerts", "store"), ("states", "commit"), ("states", "renew_relay_lease"),
          ("index", "put"), ("index", "remove"), ("notify", "send_message"),
          ("states", "mark_sent")]


class IndexedWorld(World):
    """The ingest world, its relay feeding an AlertIndex."""

    def __init__(self) -> None:
        super().__init__()
        self.index = MemoryAlertIndex()
        self.relay = Relay(self.states, EventQueue(self.notify), EventQueue(self.siem),
                           index=IndexFeed(self.index, self.alerts))

    def relay_all(self) -> None:
        for tenant_id in list(self.defender.alerts):
            self.relay.relay(tenant_id)


def recomputed(world: World) -> dict[tuple[str, str], dict]:
    """The index as the Alerts table says it should be."""
    mains = [row for (_, rk), row in world.alerts.rows.items() if "%~" not in rk]
    return {(e["PartitionKey"], e["RowKey"]): e for e in map(entry_of, mains)}


def run(seed: int, crashes: bool, steps: int = 80) -> IndexedWorld:
    rnd = random.Random(seed)
    world = IndexedWorld()
    tenants = [world.tenant] + [world.tenants.add(Tenant(
        str(uuid.UUID(int=rnd.getrandbits(128))), f"T{i}")) for i in range(2)]
    latest: dict[tuple[str, int], int] = {}  # (tenant, n) -> seconds after world.now
    created: dict[int, str] = {}  # n -> its alertCreationTime (it never changes)
    clock = 0
    for _ in range(steps):
        tenant = rnd.choice(tenants)
        action = rnd.random()
        if crashes and rnd.random() < 0.3:
            store, method = rnd.choice(FAULTS)
            getattr(world, store).faults.fail_next(method, RuntimeError("crash"))
        if action < 0.3:  # new alerts
            for _ in range(rnd.randint(1, 40)):
                n = len(latest)
                clock += rnd.randint(0, 2)
                latest[(tenant.tenant_id, n)] = clock
                first = _alert(n, world.now + timedelta(seconds=clock))
                created[n] = first["alertCreationTime"]
                world.defender.put(tenant.tenant_id, first)
        elif action < 0.5 and latest:  # updates move lastUpdateTime (across days too)
            for (tid, n) in rnd.sample(sorted(latest), min(len(latest), rnd.randint(1, 15))):
                clock += rnd.choice((1, 7, 3600, 86_400))
                latest[(tid, n)] = clock
                world.defender.put(tid, _alert(
                    n, world.now + timedelta(seconds=clock),
                    status=rnd.choice(("New", "InProgress", "Resolved")),
                    alertCreationTime=created[n]))
        elif action < 0.75:  # a fetch, maybe redelivered
            for _ in range(rnd.choice((1, 1, 2))):
                world.tenant = tenant
                with contextlib.suppress(RuntimeError):
                    world.fetch()
        else:  # a relay, maybe run twice
            for _ in range(rnd.choice((1, 1, 2))):
                with contextlib.suppress(RuntimeError):
                    world.relay.relay(tenant.tenant_id)
    for store in {store for store, _ in FAULTS}:  # the failures over: all caught up
        getattr(world, store).faults.armed.clear()
    for tenant in tenants:
        world.tenant = tenant
        world.fetch()
    world.relay_all()
    return world


@pytest.mark.parametrize("seed", range(12))
def test_the_index_is_the_alerts_table_whatever_crashed(seed):
    world = run(seed, crashes=True)
    want = recomputed(world)
    assert len(want) == sum(len(a) for a in world.defender.alerts.values())
    assert world.index.entries == want  # every alert once, at its version, its columns
    tenants = [world.tenants.get(t) for t in world.defender.alerts]
    page = search_alerts(world.index, tenants,
                         AlertFilter(range="180d"), world.now + timedelta(days=60),
                         page_size=100_000)
    assert [r.key for r in page.rows] == sorted(k for _, k in want)


@pytest.mark.parametrize("seed", range(4))
def test_without_crashes_each_alert_has_exactly_one_entry(seed):
    world = run(100 + seed, crashes=False)
    assert world.index.entries == recomputed(world)


def test_an_alert_whose_update_time_moves_has_exactly_one_entry():
    world = IndexedWorld()
    world.add_alerts(3)
    world.fetch()
    world.relay_all()
    created = world.stored()["da000000"]["AlertCreationTime"]
    for days in (1, 2):  # to another day's partition, twice
        world.defender.put(world.tenant.tenant_id, _alert(
            0, world.now + timedelta(days=days), status="Resolved",
            alertCreationTime=created))
        world.fetch()
        world.relay_all()
    ours = [k for k in world.index.entries if k[1].endswith("~da000000")]
    row = world.stored()["da000000"]
    assert ours == [key_of(world.tenant.tenant_id, "da000000", row["Version"])]
    assert world.index.entries == recomputed(world)


def test_the_index_trails_the_rows_until_the_relay_and_a_resent_chunk_is_harmless():
    world = IndexedWorld()
    world.add_alerts(3)
    world.fetch()
    assert world.index.entries == {}  # written by the relay, not the fetch
    world.notify.faults.fail_next("send_message", RuntimeError("dies before the send"))
    with pytest.raises(RuntimeError):
        world.relay_all()
    assert world.index.entries == recomputed(world)  # written before the chunk was sent
    world.defender.put(world.tenant.tenant_id, _alert(
        1, world.now + timedelta(days=1), status="Resolved",
        alertCreationTime=world.stored()["da000001"]["AlertCreationTime"]))
    world.fetch()
    page = search_alerts(world.index, [world.tenant], AlertFilter(),
                         world.now + timedelta(days=1))
    # the moved alert's entry trails its row until the relay catches up: listed as it was
    assert [(r.alert_id, r.status) for r in page.rows] == [
        ("da000002", "New"), ("da000001", "New"), ("da000000", "New")]
    world.relay_all()  # the first chunk again, then the update
    assert world.index.entries == recomputed(world)
    page = search_alerts(world.index, [world.tenant], AlertFilter(),
                         world.now + timedelta(days=1))
    assert [(r.alert_id, r.status) for r in page.rows] == [
        ("da000001", "Resolved"), ("da000002", "New"), ("da000000", "New")]


def test_an_older_entry_met_on_a_page_is_skipped_and_deleted():
    """What a relay that lost its lease may leave (a replaced version's entry put back)."""
    world = IndexedWorld()
    world.add_alerts(3)
    world.fetch()
    world.relay_all()
    row = dict(world.stored()["da000001"])
    stale = entry_of({**row, "Version": "2000-01-01T00:00:00.0000000Z"})
    recent = entry_of({**row, "Version": (world.now - timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S.0000000Z")})
    world.index.put([stale, recent])
    page = search_alerts(world.index, [world.tenant], AlertFilter(),
                         world.now + timedelta(days=1))
    assert [r.alert_id for r in page.rows] == ["da000002", "da000001", "da000000"]
    assert (recent["PartitionKey"], recent["RowKey"]) not in world.index.entries
    assert (stale["PartitionKey"], stale["RowKey"]) in world.index.entries  # out of range
    assert len(world.index.entries) == 4


def test_a_late_index_write_is_checked_against_the_alert_rows():
    """A relay whose write ends past half its lease: another may have moved the alert
    on, so the entries it wrote are checked, and one of a replaced version deleted."""
    world = IndexedWorld()
    world.add_alerts(2)
    world.fetch()
    state = world.states.of(world.tenant.tenant_id)
    events = state.outbox(state.outbox_rows()[0])[0]  # the chunk a stalled relay holds
    world.relay_all()  # meanwhile another relay sends it
    created = world.stored()["da000000"]["AlertCreationTime"]
    world.defender.put(world.tenant.tenant_id, _alert(
        0, world.now + timedelta(hours=1), status="Resolved", alertCreationTime=created))
    world.fetch()
    world.relay_all()  # and the next version of da000000
    feed = IndexFeed(world.index, world.alerts)
    reads: list[str] = []
    version = world.alerts.version
    world.alerts.version = lambda *a: reads.append(a[1]) or version(*a)
    feed.record(events, deadline=float("inf"))  # in time: no check, the stale entry back
    assert not reads and len(world.index.entries) == 3
    feed.record(events, deadline=0)  # late: checked
    assert sorted(reads) == ["da000000", "da000001"]
    assert world.index.entries == recomputed(world)


def test_the_backfill_indexes_a_store_written_by_the_previous_version():
    """Alerts fetched and relayed before the index existed (the relay kept none), then
    the new relay and the backfill, in either order, with updates between: in step."""
    world = IndexedWorld()
    world.relay = Relay(world.states, EventQueue(world.notify), EventQueue(world.siem))
    world.add_alerts(30)
    world.fetch()
    world.relay_all()  # the previous version: no index
    assert world.index.entries == {}
    world.relay = Relay(world.states, EventQueue(world.notify), EventQueue(world.siem),
                        index=IndexFeed(world.index, world.alerts))  # deployed
    created = {row["AlertId"]: row["AlertCreationTime"] for row in world.stored().values()}
    for n in (3, 4):  # updated after the deploy, relayed before the backfill
        world.defender.put(world.tenant.tenant_id, _alert(
            n, world.now + timedelta(hours=2), status="Resolved",
            alertCreationTime=created[f"da{n:06d}"]))
    world.fetch()
    world.relay_all()
    first = backfill(world.alerts, world.index, world.tenant.tenant_id, batch_rows=7,
                     budget=7)
    assert not first.done
    world.defender.put(world.tenant.tenant_id, _alert(  # updated mid-backfill
        20, world.now + timedelta(hours=3), alertCreationTime=created["da000020"]))
    world.fetch()
    world.relay_all()
    assert backfill(world.alerts, world.index, world.tenant.tenant_id, batch_rows=7).done
    assert world.index.entries == recomputed(world)
    assert len(world.index.entries) == 30
