"""The audit trail's contract, on Azurite and on the in-memory fake: an action recorded
once whatever is retried, never overwritten, the alert's entries newest first, and keyset
pages filtered by tenant, actor, outcome and time that read about what they show."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.storage.audit import AuditTrail
from shared.storage.memory.audit import MemoryAuditTrail
from shared.triage.model import Actor, AuditEntry

T1, T2 = str(uuid.uuid4()), str(uuid.uuid4())
ALICE = Actor("oid-alice", "Alice", "entra")
BOT = Actor("soar", "soar", "api")
START = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def trail(backend):
    return backend.repo(AuditTrail, "Audit", MemoryAuditTrail)


def entry(n: int, *, tenant: str = T1, alert: str = "da1_1", actor: Actor = ALICE,
          outcome: str = "done", action: str | None = None, **extra) -> AuditEntry:
    return AuditEntry(action_id=action or f"act-{n}", at=START + timedelta(seconds=n),
                      actor=actor, tenant_id=tenant, alert_id=alert,
                      change={"status": "Resolved", "comment": f"note {n}"},
                      before={"status": "New"}, after={"status": "Resolved"},
                      outcome=outcome, detail="200 OK", **extra)


def test_an_entry_reads_back_as_recorded(trail):
    hostile = entry(1, alert="da/1#?%\\x", action="key/with#odd?chars%")
    hostile.change["comment"] = "=cmd|' /C calc'!A0 <script>{\"x\":1}</script> \u2028"
    hostile.extra = {"nested": [1, {"a": None}]}
    assert trail.record(hostile) == hostile
    assert trail.recorded(T1, hostile.alert_id, hostile.action_id) == hostile
    assert trail.for_alert(T1, hostile.alert_id) == [hostile]
    assert trail.page()[0] == [hostile]


def test_an_action_is_recorded_once_and_never_overwritten(trail):
    first = entry(1, action="same")
    assert trail.record(first) == first
    retried = entry(5, action="same", outcome="failed")  # a retry, later, another answer
    assert trail.record(retried) == first
    assert trail.for_alert(T1, "da1_1") == [first]
    assert trail.page() == ([first], None)
    assert trail.page(tenant_id=T1) == ([first], None)
    # the same action id on another alert is another entry (ids are per request and alert)
    other = entry(2, alert="da2_2", action="same")
    assert trail.record(other) == other
    assert [e.alert_id for e in trail.page()[0]] == ["da2_2", "da1_1"]


def test_an_alerts_entries_newest_first(trail):
    for n in (3, 1, 2):
        trail.record(entry(n))
    trail.record(entry(4, alert="da9_9"))
    assert [e.action_id for e in trail.for_alert(T1, "da1_1")] == ["act-3", "act-2", "act-1"]
    assert trail.for_alert(T1, "da1_1", limit=1)[0].action_id == "act-3"
    assert trail.recorded(T1, "da1_1", "act-404") is None
    assert trail.for_alert(T2, "da1_1") == []


def test_pages_are_keyset_newest_first_and_filtered(trail):
    for n in range(7):
        trail.record(entry(n, tenant=T1 if n % 2 else T2, actor=BOT if n % 3 == 0 else ALICE,
                           outcome="throttled" if n == 5 else "done"))
    seen, token = [], None
    while True:
        shown, token = trail.page(limit=3, continuation=token)
        seen.extend(e.action_id for e in shown)
        if token is None:
            break
    assert seen == [f"act-{n}" for n in range(6, -1, -1)]
    assert [e.action_id for e in trail.page(tenant_id=T1)[0]] == ["act-5", "act-3", "act-1"]
    assert [e.action_id for e in trail.page(actor_id="soar")[0]] == [
        "act-6", "act-3", "act-0"]
    assert [e.action_id for e in trail.page(tenant_id=T1, actor_id="soar")[0]] == ["act-3"]
    assert [e.action_id for e in trail.page(outcome="throttled")[0]] == ["act-5"]
    window = trail.page(since=START + timedelta(seconds=2), until=START + timedelta(seconds=4))
    assert [e.action_id for e in window[0]] == ["act-4", "act-3", "act-2"]
    first, token = trail.page(since=START + timedelta(seconds=2), limit=2)
    assert [e.action_id for e in first] == ["act-6", "act-5"]
    rest, token = trail.page(since=START + timedelta(seconds=2), limit=2, continuation=token)
    assert [e.action_id for e in rest] == ["act-4", "act-3"]
    last, token = trail.page(since=START + timedelta(seconds=2), limit=2, continuation=token)
    assert [e.action_id for e in last] == ["act-2"] and token is None


def test_a_continuation_no_page_gave_is_refused(trail):
    for bad in ("x", "' or 1 eq 1", "1" * 20 + "~a/b"):
        with pytest.raises(ValueError):
            trail.page(continuation=bad)


def test_a_part_too_large_for_a_column_is_kept_as_a_marker_not_refused(trail):
    big = entry(1, action="big")
    big.extra = {"alert": {"comments": ["x" * 1000] * 40}}
    recorded = trail.record(big)
    assert recorded.extra["clipped"] > 15_000
    assert trail.recorded(T1, "da1_1", "big") == recorded
    assert recorded.change == big.change


def test_an_intent_is_noted_once_and_hidden_from_the_lists(trail):
    assert trail.intend(T1, "da1_1", "act-1", START) is None
    assert trail.intend(T1, "da1_1", "act-1", START + timedelta(minutes=3)) == START
    assert trail.intend(T1, "da2_2", "act-1", START) is None  # per alert
    assert trail.recorded(T1, "da1_1", "act-1") is None
    assert trail.for_alert(T1, "da1_1") == [] and trail.page() == ([], None)
    trail.record(entry(1))
    assert [e.action_id for e in trail.for_alert(T1, "da1_1")] == ["act-1"]


def test_an_incidents_entries_are_its_own(trail):
    """An incident's entry (graph tenants' incident triage) is kept apart from the alert
    entries of the same id, recorded once per action id, and listed with the rest."""
    on_incident = AuditEntry(action_id="act-i", at=START, actor=ALICE, tenant_id=T1,
                             alert_id="", incident_id="17",
                             change={"status": "Resolved"}, before={"status": "Active"},
                             after={"status": "Resolved"}, outcome="done", detail="200 OK")
    on_alert = entry(2, alert="17", action="act-i")
    assert trail.record(on_incident) == on_incident
    assert trail.record(on_alert) == on_alert  # same ids, another subject: its own entry
    assert trail.recorded(T1, "", "act-i", incident_id="17") == on_incident
    assert trail.recorded(T1, "17", "act-i") == on_alert
    assert trail.for_incident(T1, "17") == [on_incident]
    assert trail.for_alert(T1, "17") == [on_alert]
    retried = AuditEntry(action_id="act-i", at=START + timedelta(seconds=9), actor=ALICE,
                         tenant_id=T1, alert_id="", incident_id="17", change={},
                         before={}, after={}, outcome="failed", detail="later")
    assert trail.record(retried) == on_incident
    assert trail.intend(T1, "", "act-i", START, incident_id="17") is None
    assert trail.intend(T1, "", "act-i", START + timedelta(minutes=1),
                        incident_id="17") == START
    assert trail.intend(T1, "17", "act-i", START) is None  # the alert's is another
    assert trail.page(tenant_id=T1)[0] == [on_alert, on_incident]
