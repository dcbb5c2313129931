"""Changes the MSSP made itself, on the in-memory fakes: the marks set before Defender is
asked make the fetch's event carry `by`, only when the change is exactly what was asked;
`store` puts Defender's answer in the hub at once with its one event, and the next fetch
adds none. Crashes between any two steps of `store` lose no event and repeat none."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from shared import codec, timefmt
from shared.ingest.own_changes import OwnChanges
from shared.ingest.worker import Ingestor, IngestStores
from shared.messages import AlertEvent
from shared.storage.memory.own_changes import MemoryOwnMarks
from shared.storage.queues import FetchQueue, RelayQueue
from shared.tenants.ops_notices import OpsNotices
from shared.triage.model import Actor, Change
from tests.unit.test_ingestor import World, _alert

ANN = Actor("oid-ann", "Ann Analyst", "entra")
BY_ANN = {"id": "oid-ann", "name": "Ann Analyst", "via": "entra"}


class OwnWorld(World):
    """The ingest world with the marks consulted, and OwnChanges beside the fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.marks = MemoryOwnMarks()
        self.ingestor = Ingestor(self.settings, self.tokens, self.defender, IngestStores(
            tenants=self.tenants, alerts=self.alerts, states=self.states, runs=self.runs,
            app_health=self.app_health, fetch_queue=FetchQueue(self.fetch_queue),
            relay_queue=RelayQueue(self.relay_queue),
            notices=OpsNotices(self.notices, "ops@mssp.example"), own_marks=self.marks))
        self.own = OwnChanges(self.marks, self.states, self.alerts, self.tenants,
                              RelayQueue(self.relay_queue))

    def defender_sets(self, n: int, minutes: float = 5, **fields: Any) -> dict[str, Any]:
        """Defender's alert n as changed at now + `minutes` (what a PATCH answers)."""
        alert = _alert(n, self.now + timedelta(minutes=minutes), **fields)
        alert["alertCreationTime"] = timefmt.from_datetime(self.now + timedelta(seconds=n))
        self.defender.put(self.tenant.tenant_id, alert)
        return dict(alert)

    def expect(self, n: int, fields: dict[str, Any], minutes: float = 5) -> None:
        """Marked as made just before Defender's change at now + `minutes`."""
        self.own.clock = lambda: (self.now + timedelta(minutes=minutes, seconds=-1)
                                  ).timestamp()
        self.own.expect(self.tenant.tenant_id, [f"da{n:06d}"], fields, ANN)

    def updates(self) -> list[AlertEvent]:
        self.relay_requested()
        return [e for e in self.events() if e.change == "updated"]


@pytest.fixture
def world() -> OwnWorld:
    w = OwnWorld()
    w.add_alerts(3)
    w.fetch()
    w.relay_requested()
    return w


# the fetch's events ---------------------------------------------------------------------
def test_a_change_exactly_as_asked_carries_who_asked(world):
    world.expect(0, {"status": "Resolved", "classification": "FalsePositive",
                     "determination": "Other", "comment": "benign"})
    world.defender_sets(0, status="Resolved", classification="FalsePositive",
                        determination="Other")
    world.defender_sets(1, minutes=6, status="Resolved")  # the customer's own
    assert world.fetch().changed == 2
    updates = {e.alert_id: e for e in world.updates()}
    assert updates["da000000"].by == BY_ANN
    assert updates["da000000"].changed["status"] == ["New", "Resolved"]
    assert updates["da000001"].by is None


def test_a_change_beyond_what_was_asked_is_the_customers(world):
    world.expect(0, {"status": "Resolved"})
    world.expect(1, {"status": "Resolved"})
    world.defender_sets(0, status="Resolved", assignedTo="someone@customer.example")
    world.defender_sets(1, status="InProgress")  # another value than the one asked
    world.fetch()
    assert [e.by for e in world.updates()] == [None, None]


def test_two_actions_of_one_analyst_make_one_own_change(world):
    world.expect(0, {"assignedTo": "ann@mssp.example"}, minutes=4)
    world.expect(0, {"status": "InProgress"}, minutes=5)
    world.defender_sets(0, status="InProgress", assignedTo="ann@mssp.example")
    world.fetch()
    assert [e.by for e in world.updates()] == [BY_ANN]


def test_a_comment_alone_moves_only_the_update_time_and_is_own(world):
    world.expect(0, {"comment": "looking"})
    world.defender_sets(0)  # only lastUpdateTime moves
    world.defender_sets(1, minutes=6)  # the customer's comment
    world.fetch()
    assert {e.alert_id: e.by for e in world.updates()} == {"da000000": BY_ANN,
                                                           "da000001": None}


def test_a_mark_stands_for_an_hour_only(world):
    world.expect(0, {"status": "Resolved"}, minutes=5)
    world.defender_sets(0, minutes=5 + 61, status="Resolved")
    world.fetch()
    assert [e.by for e in world.updates()] == [None]


def test_the_marks_are_read_once_per_chunk_and_only_for_updates(world):
    assert world.marks.reads == 0  # the first fetch: new alerts only
    world.fetch()  # the overlap again, idle
    assert world.marks.reads == 0
    world.expect(0, {"status": "Resolved"})
    world.defender_sets(0, status="Resolved")
    world.defender_sets(1, status="Resolved")
    world.fetch()
    assert world.marks.reads == 1


def test_a_fetch_rerun_after_a_crash_gives_the_same_by(world):
    world.expect(0, {"status": "Resolved"})
    world.defender_sets(0, status="Resolved")
    world.states.faults.fail_next("commit", RuntimeError("worker died before the commit"))
    with pytest.raises(RuntimeError):
        world.fetch()
    world.expect(0, {"status": "New"}, minutes=20)  # a later action changes nothing here
    world.fetch()
    assert [e.by for e in world.updates()] == [BY_ANN]


# stored at once -------------------------------------------------------------------------
def _stored_status(world: OwnWorld, n: int) -> str:
    return world.stored()[f"da{n:06d}"]["Status"]


def test_a_stored_answer_is_shown_at_once_and_the_next_fetch_adds_no_event(world):
    world.expect(0, {"status": "Resolved"})
    answer = world.defender_sets(0, status="Resolved")
    cursor = world.states.of(world.tenant.tenant_id).cursor()
    result = world.own.store(world.tenant.tenant_id, answer, ANN)
    assert (result.stored, result.event) == (True, True)
    assert _stored_status(world, 0) == "Resolved"
    assert world.states.of(world.tenant.tenant_id).cursor() == cursor  # not moved
    assert [(e.alert_id, e.by) for e in world.updates()] == [("da000000", BY_ANN)]
    run = world.fetch()
    assert (run.new, run.changed) == (0, 0)
    assert world.own.store(world.tenant.tenant_id, answer, ANN).event is False  # a retry
    assert len(world.updates()) == 1


def test_a_stored_answer_keeps_the_evidence_defender_left_out(world):
    world.defender_sets(0, evidence=[{"entityType": "File", "fileName": "x.exe"}])
    world.fetch()
    answer = world.defender_sets(0, minutes=7, status="Resolved")  # no evidence key
    assert world.own.store(world.tenant.tenant_id, answer, ANN).stored
    main = world.alerts.get_stored(world.tenant.tenant_id, "da000000")
    body = codec.unpack(b"".join(main.body[k] for k in sorted(main.body)))
    assert body["evidence"] == [{"entityType": "File", "fileName": "x.exe"}]
    assert body["status"] == "Resolved"


@pytest.mark.parametrize("answer", [{}, {"id": "da000000"},
                                    {"id": "da000000", "lastUpdateTime": "yesterday"}])
def test_an_answer_without_an_id_or_a_time_is_not_stored(world, answer):
    assert not world.own.store(world.tenant.tenant_id, answer, ANN).stored


def test_an_alert_not_stored_yet_is_left_to_the_fetch(world):
    world.expect(7, {"status": "Resolved"})
    answer = world.defender_sets(7, status="Resolved")
    result = world.own.store(world.tenant.tenant_id, answer, ANN)
    assert not result.stored and "fetch" in result.detail
    world.fetch()
    world.relay_requested()
    assert [e.change for e in world.events() if e.alert_id == "da000007"] == ["new"]


def test_while_a_fetch_writes_the_change_is_left_to_it_and_carries_by(world):
    state = world.states.of(world.tenant.tenant_id)
    running = state.open("another-worker", 120)
    assert state.extend("another-worker", 900, running.lease_etag)  # it writes
    world.expect(0, {"status": "Resolved"})
    answer = world.defender_sets(0, status="Resolved")
    result = world.own.store(world.tenant.tenant_id, answer, ANN)
    assert not result.stored and "fetch" in result.detail
    state.release_lease("another-worker")
    world.fetch()
    assert [(e.alert_id, e.by) for e in world.updates()] == [("da000000", BY_ANN)]


def test_after_an_idle_run_the_change_is_stored_at_once(world):
    world.fetch()  # idle: its short lease is left to lapse
    world.expect(0, {"status": "Resolved"})
    answer = world.defender_sets(0, status="Resolved")
    assert world.own.store(world.tenant.tenant_id, answer, ANN).event
    assert world.fetch().outcome == "success"  # the borrowed lease was given back


def test_a_run_whose_short_lease_was_taken_stops_before_writing_and_loses_nothing(world):
    world.expect(0, {"status": "Resolved"})
    answer = world.defender_sets(0, status="Resolved")
    world.defender_sets(1, minutes=6, status="InProgress")  # the customer's, meanwhile
    page, stored = world.defender.page, []

    @contextlib.contextmanager
    def store_during_the_call(*args: Any, **kwargs: Any) -> Iterator[Any]:
        stored.append(world.own.store(world.tenant.tenant_id, answer, ANN))
        with page(*args, **kwargs) as alerts:
            yield alerts

    world.defender.page = store_during_the_call
    run = world.fetch()
    assert run.outcome == "conflict" and stored[0].event  # it wrote nothing
    world.defender.page = page
    assert world.fetch().changed == 1  # da000001; da000000 is stored already
    assert {e.alert_id: e.by for e in world.updates()} == {"da000000": BY_ANN,
                                                           "da000001": None}


@pytest.mark.parametrize("crash", ["store", "commit_alone", "send_message"])
def test_a_crash_between_any_two_steps_loses_no_event_and_repeats_none(world, crash):
    faults = {"store": world.alerts.faults, "commit_alone": world.states.faults,
              "send_message": world.relay_queue.faults}[crash]
    faults.fail_next(crash, SystemExit(f"killed at {crash}"))
    world.expect(0, {"status": "Resolved"})
    answer = world.defender_sets(0, status="Resolved")
    with pytest.raises(SystemExit):
        world.own.store(world.tenant.tenant_id, answer, ANN)
    world.own.store(world.tenant.tenant_id, answer, ANN)  # the caller's retry, or none
    world.fetch()
    world.fetch()
    updates = world.updates()
    assert [(e.alert_id, e.by) for e in updates] == [("da000000", BY_ANN)]
    assert _stored_status(world, 0) == "Resolved"


@pytest.mark.parametrize("crash", ["store", "commit_alone", "send_message"])
def test_a_crash_without_a_retry_is_caught_up_by_the_next_fetch(world, crash):
    faults = {"store": world.alerts.faults, "commit_alone": world.states.faults,
              "send_message": world.relay_queue.faults}[crash]
    faults.fail_next(crash, SystemExit(f"killed at {crash}"))
    world.expect(0, {"status": "Resolved"})
    answer = world.defender_sets(0, status="Resolved")
    with pytest.raises(SystemExit):
        world.own.store(world.tenant.tenant_id, answer, ANN)
    # the lease the dead call held lapses (60 s); here it is given back by its finally
    world.fetch()
    assert [(e.alert_id, e.by) for e in world.updates()] == [("da000000", BY_ANN)]


def test_marks_are_pruned_a_day_after_their_window(world):
    world.expect(0, {"status": "Resolved"}, minutes=0)
    world.own.pruned.clear()
    world.expect(1, {"status": "Resolved"}, minutes=26 * 60)
    assert [m.alert_id for m in world.marks.partitions[world.tenant.tenant_id].values()
            ] == ["da000001"]


def test_expect_takes_the_fields_of_a_change_as_defender_names_them(world):
    world.expect(0, {"status": "Resolved", "assignedTo": None, "comment": "x",
                     "severity": "Low"})
    (mark,) = world.marks.partitions[world.tenant.tenant_id].values()
    assert (mark.fields, mark.comment, mark.actor) == ({"status": "Resolved"}, True, BY_ANN)
    assert dataclasses.asdict(mark)["alert_id"] == "da000000"
    world.own.expect(world.tenant.tenant_id, ["da000001"],
                     Change(status="Resolved", comment="done").validate(), ANN)
    latest = [m for m in world.marks.partitions[world.tenant.tenant_id].values()
              if m.alert_id == "da000001"]
    assert [(m.fields, m.comment) for m in latest] == [({"status": "Resolved"}, True)]
