"""TriageService on the in-memory repositories and a fake Defender at the edge: invalid
changes and unfit tenants refused before any call, conflicts shown not overwritten, each
Defender answer mapped and recorded once, a retried action answered from the record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import timefmt
from shared.microsoft.defender import (
    DefenderError,
    Forbidden,
    NotFound,
    Rejected,
    Throttled,
)
from shared.microsoft.identity import TokenError
from shared.model import Tenant, TenantStatus
from shared.storage.alert_rows import alert_rows
from shared.storage.memory.audit import MemoryAuditTrail
from shared.storage.memory.ingest import MemoryAlerts
from shared.storage.memory.tenants import MemoryTenants
from shared.triage.model import Actor, Change, InvalidChange
from shared.triage.service import READ_ONLY, TriageService, UnknownTenant
from tests.helpers import settings

V1 = "2026-12-03T08:00:00.1234567Z"
V2 = "2026-12-03T08:05:00.7654321Z"
ALICE = Actor("oid-alice", "Alice", "entra")
RESOLVE = Change(status="Resolved", classification="FalsePositive",
                 determination="NotMalicious", comment="benign admin script")


class FakeDefender:
    """GET and PATCH of one alert; `refuse` raises on the next call; `calls` kept."""

    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, Any]] = {}
        self.refuse: list[Exception] = []
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []
        self.tick = 0

    def _take(self, kind: str, alert_id: str, body: dict[str, Any] | None) -> None:
        self.calls.append((kind, alert_id, body))
        if self.refuse:
            raise self.refuse.pop(0)
        if alert_id not in self.alerts:
            raise NotFound("Alert not found", 404, "NotFound", transient=False)

    def get_alert(self, base: str, token: str, alert_id: str, **_: Any) -> dict[str, Any]:
        self._take("GET", alert_id, None)
        return dict(self.alerts[alert_id])

    def update_alert(self, base: str, token: str, alert_id: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        self._take("PATCH", alert_id, body)
        self.tick += 1
        alert = {**self.alerts[alert_id],
                 **{k: v for k, v in body.items() if k != "comment"},
                 "lastUpdateTime": f"2026-12-03T09:00:{self.tick:02d}.0000001Z"}
        if "comment" in body:
            alert["comments"] = [*alert.get("comments", []), {
                "comment": body["comment"], "createdBy": "MSSP Hub",
                "createdTime": timefmt.from_datetime(datetime.now(UTC))}]
        self.alerts[alert_id] = alert
        return dict(alert)


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


class World:
    def __init__(self, access: str = "triage", status: TenantStatus = TenantStatus.ACTIVE,
                 stored: bool = True) -> None:
        self.tenant_id = str(uuid.uuid4())
        self.tenants, self.alerts = MemoryTenants(), MemoryAlerts()
        self.audit, self.defender, self.tokens = MemoryAuditTrail(), FakeDefender(), FakeTokens()
        self.tenants.add(Tenant(self.tenant_id, "Contoso", status=status, access=access))
        alert = {"id": "da1", "title": "t", "severity": "High", "status": "New",
                 "assignedTo": None, "classification": None, "determination": None,
                 "alertCreationTime": V1, "lastUpdateTime": V1}
        self.defender.alerts["da1"] = alert
        if stored:
            self.alerts.store(alert_rows(self.tenant_id, alert))
        self.expected: list[tuple[Any, ...]] = []
        self.stored_own: list[tuple[Any, ...]] = []
        self.service = TriageService(
            settings(), self.tenants, self.alerts, self.audit, self.defender, self.tokens,
            expect_own=lambda *a: self.expected.append(a),
            store_own=lambda *a: self.stored_own.append(a))

    def apply(self, change: Change = RESOLVE, alert_id: str = "da1", **options: Any):
        return self.service.apply(ALICE, self.tenant_id, alert_id, change, **options)


def test_a_change_is_written_recorded_once_and_handed_to_own_changes():
    world = World()
    applied = world.apply(action_id="a1")
    assert applied.outcome == "done" and applied.detail == "200 OK"
    assert applied.alert["status"] == "Resolved"
    assert [c[0] for c in world.defender.calls] == ["PATCH"]  # stored: no GET for before
    assert world.defender.calls[0][2] == RESOLVE.body()
    entry = world.audit.recorded(world.tenant_id, "da1", "a1")
    assert entry == applied.entry and entry.outcome == "done"
    assert entry.before == {"status": "New", "assignedTo": None, "classification": None,
                            "determination": None, "lastUpdateTime": timefmt.normalize(V1)}
    assert entry.after["status"] == "Resolved"
    assert entry.after["determination"] == "NotMalicious"
    assert entry.change == RESOLVE.body() and entry.actor == ALICE
    assert world.expected == [(world.tenant_id, ["da1"], RESOLVE.fields(), ALICE)]
    assert world.stored_own == [(world.tenant_id, applied.alert, ALICE)]


def test_a_retried_action_answers_the_record_without_calling_defender():
    world = World()
    first = world.apply(action_id="a1")
    again = world.apply(action_id="a1")
    assert again.repeated and again.outcome == first.outcome == "done"
    assert again.alert == first.alert and again.entry == first.entry
    assert len(world.defender.calls) == 1
    assert len(world.defender.alerts["da1"]["comments"]) == 1
    assert len(world.audit.page()[0]) == 1


@pytest.mark.parametrize("change", [
    Change(status="Closed"), Change(classification="FalsePositive", determination="Malware"),
    Change(determination="Malware"), Change(), Change(comment="  ")])
def test_an_invalid_change_is_refused_before_any_call_or_record(change):
    world = World()
    with pytest.raises(InvalidChange):
        world.apply(change)
    assert world.defender.calls == [] and world.audit.page()[0] == []


def test_an_unknown_tenant_is_not_acted_on_nor_recorded():
    world = World()
    with pytest.raises(UnknownTenant):
        world.service.apply(ALICE, str(uuid.uuid4()), "da1", RESOLVE)
    assert world.defender.calls == [] and world.audit.page()[0] == []


def test_a_read_only_tenant_is_refused_with_its_reason_before_any_call():
    world = World(access="read")
    applied = world.apply()
    assert (applied.outcome, applied.detail) == ("refused", READ_ONLY)
    assert "Alert.ReadWrite.All" in applied.detail
    world.tenants.set_access(world.tenant_id, "read", "granted read only on 2026-12-01")
    assert world.apply().detail == "granted read only on 2026-12-01"
    assert world.defender.calls == []
    assert [e.outcome for e in world.audit.page()[0]] == ["refused", "refused"]


def test_a_tenant_that_is_not_active_is_refused():
    world = World(status=TenantStatus.PAUSED)
    world.tenants.pause(world.tenant_id, "customer asked")
    applied = world.apply()
    assert applied.outcome == "refused" and "paused: customer asked" in applied.detail
    assert world.defender.calls == []


def test_a_stale_page_gets_a_conflict_with_the_current_alert_and_no_write():
    world = World()
    world.defender.alerts["da1"] = {**world.defender.alerts["da1"], "status": "InProgress",
                                    "lastUpdateTime": V2}
    applied = world.apply(seen_version=V1)
    assert applied.outcome == "conflict"
    assert applied.alert["status"] == "InProgress" and V2 in applied.detail
    assert [c[0] for c in world.defender.calls] == ["GET"]
    assert world.expected == [] and world.stored_own == []
    # the version the page showed, in another spelling of the same time: no conflict
    fresh = world.apply(seen_version="2026-12-03T08:05:00.7654321+00:00", action_id="a2")
    assert fresh.outcome == "done"
    assert [c[0] for c in world.defender.calls] == ["GET", "GET", "PATCH"]


def test_before_comes_from_defender_when_the_hub_has_not_stored_the_alert():
    world = World(stored=False)
    applied = world.apply()
    assert [c[0] for c in world.defender.calls] == ["GET", "PATCH"]
    assert applied.entry.before["status"] == "New"
    assert applied.entry.before["lastUpdateTime"] == V1


def test_a_403_on_write_makes_the_tenant_read_only_with_the_reason():
    world = World()
    world.defender.refuse.append(Forbidden("The application does not have any of the "
                                           "required application permissions "
                                           "(Alert.ReadWrite.All)", 403, "Forbidden",
                                           transient=False))
    applied = world.apply()
    assert applied.outcome == "refused" and "403" in applied.detail
    tenant = world.tenants.get(world.tenant_id)
    assert tenant.access == "read" and tenant.access_reason == applied.detail
    assert world.apply(action_id="next").outcome == "refused"
    assert len(world.defender.calls) == 1  # the next one is refused before any call


@pytest.mark.parametrize(("error", "outcome", "detail"), [
    (Throttled(42), "throttled", "retry after 42 s"),
    (NotFound("x", 404, "NotFound", transient=False), "failed", "not found in Defender"),
    (Rejected("Invalid value for determination", 400, "InvalidRequestBody",
              transient=False), "failed", "400: Invalid value for determination"),
    (DefenderError("Defender API 503", 503, "ServiceUnavailable"), "failed",
     "may or may not have been made"),
])
def test_defenders_refusals_are_recorded_as_outcomes(error, outcome, detail):
    world = World()
    world.defender.refuse.append(error)
    applied = world.apply(action_id="a1")
    assert applied.outcome == outcome and detail in applied.detail
    assert applied.retry_after == (42 if outcome == "throttled" else None)
    assert world.stored_own == []
    again = world.apply(action_id="a1")  # the same request again: its recorded answer
    assert (again.outcome, again.retry_after, again.repeated) == (
        outcome, applied.retry_after, True)
    assert len(world.defender.calls) == 1


def test_no_token_is_a_failure_recorded_without_a_call():
    world = World()
    world.tokens.refuse.append(TokenError("consent revoked", 400, None, "x"))
    applied = world.apply()
    assert applied.outcome == "failed" and "no token" in applied.detail
    assert world.defender.calls == []


def test_a_failed_copy_of_the_alert_does_not_lose_the_audit_entry():
    world = World()

    def broken(*_: Any) -> None:
        raise RuntimeError("storage down")

    world.service.store_own = broken
    applied = world.apply(action_id="a1")
    assert applied.outcome == "done"
    assert world.audit.recorded(world.tenant_id, "da1", "a1").outcome == "done"


def test_a_retry_after_a_worker_died_between_the_write_and_the_record_does_not_resend():
    world = World()
    record = world.audit.record

    def die(entry):
        raise RuntimeError("worker died")

    world.audit.record = die
    with pytest.raises(RuntimeError):
        world.apply(action_id="a1")
    world.audit.record = record
    assert [c[0] for c in world.defender.calls] == ["PATCH"]
    again = world.apply(action_id="a1")
    assert again.outcome == "done" and "earlier attempt" in again.detail
    assert [c[0] for c in world.defender.calls] == ["PATCH", "GET"]
    assert len(world.defender.alerts["da1"]["comments"]) == 1
    assert again.entry.after["status"] == "Resolved"
    assert world.stored_own[-1][1]["status"] == "Resolved"


def test_a_retry_after_a_worker_died_before_the_write_sends_it():
    world = World()

    def die(*_: Any) -> None:
        raise RuntimeError("worker died")

    world.service.expect_own = die
    with pytest.raises(RuntimeError):
        world.apply(action_id="a1")
    world.service.expect_own = lambda *a: world.expected.append(a)
    again = world.apply(action_id="a1")
    assert again.outcome == "done" and again.detail == "200 OK"
    assert [c[0] for c in world.defender.calls] == ["GET", "PATCH"]
    assert len(world.defender.alerts["da1"]["comments"]) == 1


def test_an_old_comment_with_the_same_text_is_not_taken_for_this_action():
    world = World()
    world.defender.alerts["da1"] = {**world.defender.alerts["da1"], "status": "Resolved",
                                    "classification": "FalsePositive",
                                    "determination": "NotMalicious", "comments": [
        {"comment": RESOLVE.comment, "createdTime": "2020-01-01T00:00:00Z"}]}
    world.audit.intend(world.tenant_id, "da1", "a1", datetime.now(UTC))
    applied = world.apply(action_id="a1")
    assert applied.detail == "200 OK"
    assert [c[0] for c in world.defender.calls] == ["GET", "PATCH"]
