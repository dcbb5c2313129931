"""The Ingestor's exactly-once logic on the in-memory fakes (no Azurite): a fake Defender
and token provider at the edge, the repositories of shared/storage/memory behind it.

Each run is followed by the relay (on memory queues), so "one event per change" is what a
consumer would receive. Crashes are injected into the fakes between two steps (rows
stored / chunk committed / relay asked / outbox sent); the retry must lose nothing and
add nothing."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import timefmt
from shared.ingest.relay import Relay
from shared.ingest.worker import Ingestor, IngestStores
from shared.messages import AlertEvent, FetchRequest, RelayRequest, alert_events
from shared.microsoft.defender import DefenderError, Forbidden, Throttled, Unauthorized
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.storage.memory.ingest import (
    MemoryAlerts,
    MemoryAppHealth,
    MemoryIngestStates,
    MemoryQueue,
    MemoryRuns,
)
from shared.storage.memory.tenants import MemoryNotices, MemoryTenants
from shared.storage.queues import EventQueue, FetchQueue, RelayQueue
from shared.tenants.ops_notices import OpsNotices
from tests.helpers import settings as make_settings


# the edge: Defender and the token provider ---------------------------------------------
class FakeDefender:
    """`GET /api/alerts` over a list of alerts: the filter on lastUpdateTime, ascending
    order, $top and $skip, as Defender answers them. `refuse` raises on the next call."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, dict[str, Any]]] = {}
        self.refuse: list[Exception] = []
        self.calls = 0

    def put(self, tenant_id: str, alert: dict[str, Any]) -> None:
        self.alerts.setdefault(tenant_id, {})[alert["id"]] = dict(alert)

    @contextlib.contextmanager
    def page(self, base: str, token: str, *, filter_: str | None, top: int, skip: int = 0,
             **_: Any) -> Iterator[Iterator[tuple[dict[str, Any], bytes]]]:
        self.calls += 1
        if self.refuse:
            raise self.refuse.pop(0)
        tenant_id = token.removeprefix("token-")
        since = (filter_ or "").removeprefix("lastUpdateTime ge ")
        found = sorted((a for a in self.alerts.get(tenant_id, {}).values()
                        if timefmt.normalize(a["lastUpdateTime"]) >= since),
                       key=lambda a: timefmt.normalize(a["lastUpdateTime"]))
        chosen = found[skip:skip + top]
        yield iter([(a, json.dumps(a).encode()) for a in chosen])


class FakeTokens:
    def __init__(self) -> None:
        self.refuse: list[TokenError] = []
        self.forgotten: list[str] = []

    def token(self, tenant_id: str) -> str:
        if self.refuse:
            raise self.refuse.pop(0)
        return f"token-{tenant_id}"

    def forget(self, tenant_id: str) -> None:
        self.forgotten.append(tenant_id)


def _stamp(when: datetime) -> str:
    return timefmt.from_datetime(when)


def _alert(n: int, updated: datetime, **fields: Any) -> dict[str, Any]:
    return {"id": f"da{n:06d}", "title": f"Alert {n}", "severity": "High", "status": "New",
            "classification": None, "determination": None, "assignedTo": None,
            "alertCreationTime": _stamp(updated), "lastUpdateTime": _stamp(updated),
            **fields}


class World:
    """One Ingestor on the fakes, and the relay that empties its outbox."""

    def __init__(self, **settings: str) -> None:
        self.settings = make_settings(**settings)
        self.defender, self.tokens = FakeDefender(), FakeTokens()
        self.tenants, self.alerts = MemoryTenants(), MemoryAlerts()
        self.states, self.runs, self.app_health = MemoryIngestStates(), MemoryRuns(), \
            MemoryAppHealth()
        self.fetch_queue, self.relay_queue = MemoryQueue(), MemoryQueue()
        self.notify, self.siem = MemoryQueue(), MemoryQueue()
        self.notices = MemoryNotices()
        self.ingestor = Ingestor(self.settings, self.tokens, self.defender, IngestStores(
            tenants=self.tenants, alerts=self.alerts, states=self.states, runs=self.runs,
            app_health=self.app_health, fetch_queue=FetchQueue(self.fetch_queue),
            relay_queue=RelayQueue(self.relay_queue),
            notices=OpsNotices(self.notices, "ops@mssp.example")))
        self.relay = Relay(self.states, EventQueue(self.notify), EventQueue(self.siem))
        self.tenant = self.tenants.add(Tenant(str(uuid.uuid4()), "Contoso"))
        self.now = datetime.now(UTC) - timedelta(hours=1)

    def add_alerts(self, count: int, start: int = 0, **fields: Any) -> None:
        for n in range(start, start + count):
            self.defender.put(self.tenant.tenant_id, _alert(
                n, self.now + timedelta(seconds=n), **fields))

    def fetch(self, continuation: bool = False):
        return self.ingestor.run(FetchRequest(self.tenant.tenant_id, continuation))

    def relay_requested(self) -> int:
        """Relay once per relay message taken off its queue; returns the messages."""
        taken = self.relay_queue.take()
        for text, _ in taken:
            self.relay.relay(RelayRequest.parse(text).tenant_id)
        return len(taken)

    def events(self) -> list[AlertEvent]:
        """What the relay has put on the notify queue (the SIEM queue must agree)."""
        notify = [e for t in self.notify.texts() for e in alert_events(t)]
        siem = [e for t in self.siem.texts() for e in alert_events(t)]
        assert sorted(e.event_id for e in notify) == sorted(e.event_id for e in siem)
        return notify

    def stored(self) -> dict[str, dict[str, Any]]:
        """Main alert rows of the tenant by alert id."""
        return {row["AlertId"]: row for (pk, rk), row in self.alerts.rows.items()
                if pk == self.tenant.tenant_id and "%~" not in rk}


@pytest.fixture
def world() -> World:
    return World()


# new and changed alerts -----------------------------------------------------------------
def test_new_alerts_are_stored_with_one_event_each(world):
    world.add_alerts(5)
    run = world.fetch()
    assert (run.outcome, run.new, run.changed, run.unchanged) == ("success", 5, 0, 0)
    assert sorted(world.stored()) == [f"da{n:06d}" for n in range(5)]
    assert world.relay_requested() == 1
    events = world.events()
    assert sorted(e.alert_id for e in events) == [f"da{n:06d}" for n in range(5)]
    assert {e.change for e in events} == {"new"}
    saved = world.tenants.get(world.tenant.tenant_id)
    assert saved.last_success_at and saved.consecutive_failures == 0
    assert saved.fetch_queued_at is None
    assert world.runs.outcomes(world.tenant.tenant_id) == ["success"]


def test_an_updated_alert_gives_one_event_per_version(world):
    world.add_alerts(2)
    world.fetch()
    world.relay_requested()
    later = world.now + timedelta(minutes=5)
    world.defender.put(world.tenant.tenant_id, _alert(0, later, status="InProgress"))
    run = world.fetch()
    assert (run.new, run.changed) == (0, 1)  # da000001, re-read in the overlap: unchanged
    world.defender.put(world.tenant.tenant_id, _alert(
        0, later + timedelta(minutes=1), status="Resolved"))
    assert world.fetch().changed == 1
    world.relay_requested()
    da0 = [e for e in world.events() if e.alert_id == "da000000"]
    assert [e.change for e in da0] == ["new", "updated", "updated"]
    assert len({e.event_id for e in da0}) == 3
    assert da0[2].changed["status"] == ["InProgress", "Resolved"]
    assert world.stored()["da000000"]["Status"] == "Resolved"


def test_alerts_read_again_in_the_overlap_give_no_event(world):
    world.add_alerts(3)
    world.fetch()
    world.add_alerts(1, start=3)  # a late-indexed alert, inside the 300 s overlap
    run = world.fetch()
    assert (run.new, run.changed, run.unchanged) == (1, 0, 3)
    world.relay_requested()
    assert sorted(e.alert_id for e in world.events()) == [f"da{n:06d}" for n in range(4)]


# redelivery and crashes -----------------------------------------------------------------
def test_a_redelivered_fetch_stores_nothing_twice_and_emits_nothing_twice(world):
    world.add_alerts(4)
    world.fetch()
    writes = world.alerts.writes
    again = world.fetch()  # the same message, delivered again
    assert (again.outcome, again.new, again.changed) == ("success", 0, 0)
    assert world.alerts.writes == writes
    world.relay_requested()
    world.relay_requested()
    assert len(world.events()) == 4


def test_a_crash_between_storing_rows_and_the_commit_loses_and_repeats_nothing(world):
    world.add_alerts(6)
    world.states.faults.fail_next("commit", RuntimeError("worker died before the commit"))
    with pytest.raises(RuntimeError):
        world.fetch()
    assert world.tenants.get(world.tenant.tenant_id).consecutive_failures == 1
    assert world.states.of(world.tenant.tenant_id).cursor() == (None, None)
    assert world.relay_requested() == 0  # nothing committed: no event yet
    retry = world.fetch()
    assert (retry.outcome, retry.new) == ("success", 6)  # the rows again, harmlessly
    world.relay_requested()
    events = world.events()
    assert len(events) == len({e.event_id for e in events}) == 6
    assert len(world.stored()) == 6
    assert world.tenants.get(world.tenant.tenant_id).consecutive_failures == 0


def test_a_crash_while_storing_rows_commits_nothing_then_the_retry_stores_all(world):
    world.add_alerts(3)
    world.alerts.faults.fail_next("store", ConnectionError("storage went away"))
    with pytest.raises(ConnectionError):
        world.fetch()
    assert world.states.of(world.tenant.tenant_id).outbox_rows() == []
    assert world.fetch().new == 3
    world.relay_requested()
    assert sorted(e.alert_id for e in world.events()) == [f"da{n:06d}" for n in range(3)]


def test_a_crash_after_the_commit_before_the_relay_message_is_caught_up(world):
    world.add_alerts(3)
    world.relay_queue.faults.fail_next("send_message", SystemExit("killed"))
    with pytest.raises(SystemExit):
        world.fetch()
    assert world.relay_requested() == 0  # the message was lost with the worker
    rerun = world.fetch()  # the next run finds the outbox row and asks for its relay
    assert rerun.new == 0
    assert world.relay_requested() == 1
    assert sorted(e.alert_id for e in world.events()) == [f"da{n:06d}" for n in range(3)]


def test_a_relay_that_dies_mid_outbox_resumes_without_losing_an_event(world):
    world.add_alerts(4)
    world.fetch()
    world.states.faults.fail_next("mark_sent", RuntimeError("relay died"))
    with pytest.raises(RuntimeError):
        world.relay_requested()  # the claim failed: nothing sent
    world.relay.relay(world.tenant.tenant_id)  # the relay message, redelivered
    world.relay.relay(world.tenant.tenant_id)
    events = world.events()
    assert len(events) == len({e.event_id for e in events}) == 4


# failing, throttled, stopped ------------------------------------------------------------
def test_a_failing_tenant_is_marked_failing_and_the_error_kept(world):
    world.add_alerts(1)
    world.defender.refuse.append(DefenderError("Defender API unreachable", 503,
                                               "ServiceUnavailable"))
    with pytest.raises(DefenderError):
        world.fetch()
    saved = world.tenants.get(world.tenant.tenant_id)
    assert saved.consecutive_failures == 1 and "unreachable" in saved.last_error
    assert saved.status == TenantStatus.ACTIVE and saved.last_error_at
    world.defender.refuse.append(DefenderError("again", 503, "ServiceUnavailable"))
    with pytest.raises(DefenderError):
        world.fetch()
    assert world.tenants.get(world.tenant.tenant_id).consecutive_failures == 2
    assert world.runs.outcomes(world.tenant.tenant_id) == ["failed", "failed"]


def test_throttling_requeues_the_fetch_for_after_the_wait(world):
    world.add_alerts(1)
    world.defender.refuse.append(Throttled(120))
    run = world.fetch()
    assert run.outcome == "throttled"
    ((text, delay),) = world.fetch_queue.sent
    assert FetchRequest.parse(text) == FetchRequest(world.tenant.tenant_id, True, "timer")
    assert delay == 120
    saved = world.tenants.get(world.tenant.tenant_id)
    assert saved.fetch_queued_at is not None
    assert 110 < (saved.throttled_until - datetime.now(UTC)).total_seconds() <= 120
    assert saved.consecutive_failures == 0


def test_more_pages_than_a_run_takes_continue_through_the_queue(monkeypatch):
    world = World(FETCH_PAGE_SIZE="2", FETCH_MAX_PAGES_PER_RUN="2")
    world.add_alerts(7)
    run = world.fetch()
    assert (run.outcome, run.new) == ("partial", 4)
    ((text, delay),) = world.fetch_queue.take()
    assert FetchRequest.parse(text) == FetchRequest(world.tenant.tenant_id, True,
                                                    "continue") and delay == 0
    assert world.tenants.get(world.tenant.tenant_id).fetch_queued_at is not None
    assert world.fetch(continuation=True).new == 3
    world.relay_requested()
    assert len(world.events()) == 7
    assert world.tenants.get(world.tenant.tenant_id).fetch_queued_at is None


def test_revoked_consent_stops_the_tenant_and_tells_ops(world):
    world.tokens.refuse.append(TokenError("consent revoked", 400,
                                          TenantStatus.CONSENT_REVOKED, "consent_revoked"))
    run = world.fetch()
    assert run.outcome == "consent_revoked"
    saved = world.tenants.get(world.tenant.tenant_id)
    assert (saved.status, saved.status_reason) == (TenantStatus.CONSENT_REVOKED,
                                                   "consent_revoked")
    assert saved.last_error == "consent revoked" and saved.fetch_queued_at is None
    (notice,) = world.notices.recent(10)
    assert notice["Kind"] == "tenant_consent_revoked"


def test_no_defender_makes_the_tenant_unavailable(world):
    world.defender.refuse.append(Forbidden("no licence", 403, "DisabledFeature"))
    assert world.fetch().outcome == "unavailable"
    saved = world.tenants.get(world.tenant.tenant_id)
    assert (saved.status, saved.status_reason) == (TenantStatus.UNAVAILABLE, "no_defender")


def test_a_refused_app_credential_is_one_app_wide_error(world):
    world.tokens.refuse.append(TokenError("bad secret", 401, None, "bad_client_secret",
                                          app_wide=True))
    assert world.fetch().outcome == "app_error"
    saved = world.tenants.get(world.tenant.tenant_id)
    assert saved.status == TenantStatus.ACTIVE and saved.consecutive_failures == 0
    assert world.app_health.identity_failure()["reason"] == "bad_client_secret"


def test_a_refused_token_is_renewed_once(world):
    world.add_alerts(2)
    world.defender.refuse.append(Unauthorized("expired", 401, "Unauthorized"))
    assert world.fetch().new == 2
    assert world.tokens.forgotten == [world.tenant.tenant_id]


def test_a_paused_tenant_is_skipped(world):
    world.tenants.pause(world.tenant.tenant_id, "by the MSSP")
    world.add_alerts(2)
    run = world.fetch()
    assert run.outcome == "skipped" and world.defender.calls == 0


# idle runs ------------------------------------------------------------------------------
def test_idle_runs_are_kept_in_the_history_once_an_hour_and_their_calls_counted(world):
    now = [1_000_000.0]
    world.ingestor.clock = lambda: now[0]
    world.add_alerts(3)
    world.fetch()  # stores 3: recorded
    for _ in range(3):  # idle, minutes apart
        now[0] += 300
        assert world.fetch().outcome == "success"
    assert [r.new for r in world.runs.recent(world.tenant.tenant_id)] == [3]
    minutes, _ = world.states.of(world.tenant.tenant_id).calls()
    assert sum(minutes.values()) == 4  # every call counted, idle ones too
    now[0] += 3_600
    world.fetch()  # idle, an hour after the last recorded run
    assert [r.new for r in world.runs.recent(world.tenant.tenant_id)] == [0, 3]
    world.add_alerts(1, start=3)
    world.fetch()  # something new: recorded at once
    assert [r.new for r in world.runs.recent(world.tenant.tenant_id)] == [1, 0, 3]
    assert world.tenants.get(world.tenant.tenant_id).last_success_at is not None


def test_a_skipped_or_finished_run_leaves_the_lease_free(world):
    world.add_alerts(2)
    world.fetch()
    assert world.states.of(world.tenant.tenant_id).acquire_lease("other", 60)[0]
    world.states.of(world.tenant.tenant_id).release_lease("other")
    world.tenants.pause(world.tenant.tenant_id, "by the MSSP")
    assert world.fetch().outcome == "skipped"
    assert world.states.of(world.tenant.tenant_id).acquire_lease("other", 60)[0]


def test_a_busy_tenant_is_left_to_the_worker_holding_it(world):
    world.add_alerts(2)
    assert world.states.of(world.tenant.tenant_id).acquire_lease("other", 60)[0]
    assert world.fetch().outcome == "busy" and world.defender.calls == 0
    assert not world.states.of(world.tenant.tenant_id).acquire_lease("mine", 60)[0]
