"""The tenant summaries on the fakes: the relay's tally equals a recount of the Alerts
table (and its copy in the summaries) after a randomized run of new alerts, status and
severity changes, redeliveries and kills between any two steps; an event in the outbox
twice counts once; the backfill starts a tally that ends at the recount."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.ingest import tally as tallies
from shared.ingest.events import changes, same, tracked
from shared.ingest.relay import Relay
from shared.messages import AlertEvent, alert_events
from shared.model import Cursor
from shared.ops import backfill
from shared.portal import queries
from shared.storage.memory.ingest import MemoryTenantSummaries
from shared.storage.queues import EventQueue
from shared.storage.tenant_summaries import Counts, recount
from tests.unit.test_ingestor import World, _alert

SEVERITIES = ("High", "Medium", "Low", "Informational")
STATUSES = ("New", "InProgress", "Resolved")


class Summed(World):
    """The ingest world, its relay keeping the tenant summaries."""

    def __init__(self) -> None:
        super().__init__()
        self.summaries = MemoryTenantSummaries()
        self.relay = Relay(self.states, EventQueue(self.notify), EventQueue(self.siem),
                           lease_seconds=0, summaries=self.summaries)

    def recount(self) -> Counts:
        rows = list(self.stored().values())
        return recount(rows, datetime.now(UTC).date())

    def tally(self) -> Counts:
        return self.states.of(self.tenant.tenant_id).tally().counts

    def drain(self) -> None:
        """Every fault cleared, fetch to the end and relay until nothing is left."""
        for faults in (self.states.faults, self.alerts.faults, self.summaries.faults,
                       self.notify.faults, self.relay_queue.faults):
            faults.armed.clear()
        for _ in range(20):
            run = self.fetch()
            if not self.fetch_queue.take() and run.outcome == "success":
                break
        self.relay.relay(self.tenant.tenant_id)
        self.relay_queue.take()


@pytest.fixture
def world() -> Summed:
    return Summed()


def _put(world: Summed, n: int, updated: datetime, created: datetime, **fields) -> None:
    alert = _alert(n, updated, **fields)
    alert["alertCreationTime"] = created.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    world.defender.put(world.tenant.tenant_id, alert)


def test_new_and_changed_alerts_are_counted_as_a_recount_counts_them(world):
    created = world.now - timedelta(days=2)
    for n, (severity, status) in enumerate([("High", "New"), ("Low", "InProgress"),
                                            ("Medium", "Resolved")]):
        _put(world, n, world.now + timedelta(seconds=n), created, severity=severity,
             status=status)
    world.fetch()
    world.relay_requested()
    day = created.date().isoformat()
    assert world.tally().open == {"High": 1, "Low": 1}
    assert world.tally().raised == {day: {"High": 1, "Low": 1, "Medium": 1}}
    # resolve one, reopen another, and move a third's severity
    later = world.now + timedelta(minutes=5)
    _put(world, 0, later, created, severity="High", status="Resolved")
    _put(world, 1, later + timedelta(seconds=1), created, severity="High",
         status="InProgress")
    _put(world, 2, later + timedelta(seconds=2), created, severity="Medium", status="New")
    world.fetch()
    world.relay_requested()
    assert world.tally().open == {"High": 1, "Medium": 1}
    assert world.tally().raised == {day: {"High": 2, "Medium": 1}}
    assert world.tally().same_counts(world.recount())
    assert world.summaries.rows[world.tenant.tenant_id].same_counts(world.recount())


def test_a_severity_change_is_carried_by_the_event():
    old = tracked({"status": "New", "severity": "Low"}, "v1")
    new = tracked({"status": "New", "severity": "High"}, "v2")
    assert changes(old, new) == {"lastUpdateTime": ["v1", "v2"],
                                 "severity": ["Low", "High"]}
    legacy = old[:5]  # an index entry written before severity was kept
    assert changes(legacy, new) == {"lastUpdateTime": ["v1", "v2"]}
    assert same(legacy, tracked({"status": "New", "severity": "High"}, "v1"))
    assert not same(old, tracked({"status": "New", "severity": "High"}, "v1"))


def _events(tenant: str, alerts: list[dict], change: str = "new") -> list[dict]:
    return [AlertEvent(tenant, "T", a["id"], a["lastUpdateTime"], change, {}, a).dump()
            for a in alerts]


def test_an_event_in_the_outbox_twice_counts_once(world):
    """A worker that died between the steps of a split commit emits a chunk's events
    again under the same ids: the tally counts them once."""
    tenant = world.tenant.tenant_id
    state = world.states.of(tenant)
    alerts = [_alert(n, world.now) for n in range(3)]
    data = [AlertEvent(tenant, "T", a["id"], a["lastUpdateTime"], "new", {}, a).to_bytes()
            for a in alerts]
    state.commit([], data, Cursor("a", 0), None, "s1")
    _, etag = state.cursor()
    state.commit([], data, Cursor("a", 0), etag, "s2")
    world.relay.relay(tenant)
    assert world.tally().open == {"High": 3}
    sent = [e.event_id for t in world.notify.texts() for e in alert_events(t)]
    assert len(sent) == 6 and len(set(sent)) == 3  # sent twice: consumers dedupe on event_id


FAULTS = [("states", "commit"), ("alerts", "store"), ("states", "mark_sent"),
          ("states", "mark_sent_counted"), ("states", "save_tally"),
          ("summaries", "publish"), ("notify", "send_message"),
          ("relay_queue", "send_message")]


@pytest.mark.parametrize("seed", range(12))
def test_randomized_run_with_kills_ends_at_the_recount(world, seed):
    rng = random.Random(seed)
    clock = world.now - timedelta(minutes=50)
    alerts: dict[int, dict] = {}
    for _ in range(60):
        roll = rng.random()
        if roll < 0.35 or not alerts:
            for _ in range(rng.randint(1, 4)):
                n = len(alerts)
                clock += timedelta(seconds=1)
                created = clock - timedelta(days=rng.choice((0, 1, 3, 20, 45)))
                alerts[n] = {"severity": rng.choice(SEVERITIES),
                             "status": rng.choice(STATUSES), "created": created}
                _put(world, n, clock, created, severity=alerts[n]["severity"],
                     status=alerts[n]["status"])
        elif roll < 0.7:
            n = rng.choice(list(alerts))
            clock += timedelta(seconds=1)
            if rng.random() < 0.7:
                alerts[n]["status"] = rng.choice(STATUSES)
            if rng.random() < 0.4:
                alerts[n]["severity"] = rng.choice(SEVERITIES)
            _put(world, n, clock, alerts[n]["created"], severity=alerts[n]["severity"],
                 status=alerts[n]["status"])
        if rng.random() < 0.3:  # a kill between two steps, somewhere
            where, method = rng.choice(FAULTS)
            getattr(world, where).faults.fail_next(method, SystemExit(f"killed in {method}"))
        try:
            if rng.random() < 0.6:
                world.fetch()
            if rng.random() < 0.6:
                world.relay_requested()
            if rng.random() < 0.2:  # a redelivered relay message
                world.relay.relay(world.tenant.tenant_id)
        except SystemExit:
            pass
    world.drain()
    expected = world.recount()
    assert expected.open, "the run opened some alerts"
    assert world.tally().same_counts(expected)
    assert world.summaries.rows[world.tenant.tenant_id].same_counts(expected)
    assert world.states.of(world.tenant.tenant_id).pending() == ([], 0)


def test_a_copy_left_undone_is_made_by_the_next_relay(world):
    world.add_alerts(2)
    world.fetch()
    world.summaries.faults.fail_next("publish", SystemExit("killed before the copy"))
    with pytest.raises(SystemExit):
        world.relay_requested()
    assert world.tenant.tenant_id not in world.summaries.rows
    assert world.states.of(world.tenant.tenant_id).pending()[1] > 0
    world.relay.relay(world.tenant.tenant_id)  # no outbox row left: the copy only
    assert world.summaries.rows[world.tenant.tenant_id].open == {"High": 2}
    assert world.states.of(world.tenant.tenant_id).pending() == ([], 0)


def test_an_older_copy_never_replaces_a_newer_one():
    summaries = MemoryTenantSummaries()
    assert summaries.publish("t", Counts({"High": 2}, {}, 5))
    assert not summaries.publish("t", Counts({"High": 1}, {}, 4))
    assert summaries.all()["t"].open == {"High": 2}


def test_the_overview_counts_come_from_the_summary():
    now = datetime(2026, 12, 3, tzinfo=UTC)
    counts = Counts({"High": 2}, {"2026-12-01": {"Low": 3}, "2026-10-01": {"High": 1}}, 3)
    shown = queries.from_summary(counts, now)
    assert shown.open_by_severity == {"High": 2, "Medium": 0, "Low": 0, "Informational": 0}
    assert shown.per_day == {("2026-12-01", "Low"): 3}
    assert queries.from_summary(None, now).open_by_severity["High"] == 0


# the backfill ---------------------------------------------------------------------------
def test_backfill_on_a_store_written_before_summaries_ends_at_the_recount(world):
    """Alerts relayed by a relay without summaries (the previous version), and more
    still in the outbox: the backfill's tally plus the outbox's events is the recount."""
    world.add_alerts(5)
    world.fetch()
    world.relay_requested()
    del world.states.partitions[world.tenant.tenant_id]["tally"]  # the old relay kept none
    later = world.now + timedelta(minutes=5)
    world.defender.put(world.tenant.tenant_id, _alert(0, later, status="Resolved"))
    world.add_alerts(2, start=5)
    world.fetch()  # these wait in the outbox
    world.relay_queue.take()
    job = backfill.Backfill(world.tenants, world.states, world.alerts, world.summaries,
                            feed=None)
    report = job.run()
    assert report.tenants == 1
    # as relayed so far: the 5 sent; the resolve and the 2 new ones wait in the outbox
    assert world.summaries.rows[world.tenant.tenant_id].open == {"High": 5}
    world.relay = Relay(world.states, EventQueue(world.notify), EventQueue(world.siem),
                        lease_seconds=0, summaries=world.summaries)
    world.relay.relay(world.tenant.tenant_id)
    assert world.tally().same_counts(world.recount())
    assert world.tally().open == {"High": 6}
    assert world.summaries.rows[world.tenant.tenant_id].same_counts(world.recount())
    assert job.run().tenants == 0  # done: a rerun resumes after the last tenant


def test_the_tally_dedupe_window_is_bounded():
    tally = tallies.Tally()
    events = _events("t", [_alert(n, datetime.now(UTC)) for n in range(tallies.SEEN + 10)])
    after = tallies.counted(tally, events, datetime.now(UTC).date())
    assert len(after.seen) == tallies.SEEN * tallies.HASH
    assert after.counts.open == {"High": tallies.SEEN + 10}


def test_a_tenant_erased_and_onboarded_again_gets_its_new_counts_copied(world):
    world.add_alerts(3)
    world.fetch()
    world.relay_requested()
    assert world.summaries.rows[world.tenant.tenant_id].open == {"High": 3}
    world.states.partitions[world.tenant.tenant_id].clear()  # offboarded, its state erased
    world.alerts.rows.clear()
    world.defender.alerts.clear()
    world.add_alerts(1, start=10)
    world.fetch()
    world.relay_requested()
    assert world.summaries.rows[world.tenant.tenant_id].open == {"High": 1}
