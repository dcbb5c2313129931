"""The notification repositories' contract, on Azurite and on the in-memory fakes: the
ledger's claims are exclusive and final states stay; held digest events are added and
drained idempotently; rules per scope; kept emails; the mail-health row."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.notify.rules import GLOBAL, parse_rule
from shared.storage.app_health import AppHealth
from shared.storage.digests import DigestRepository
from shared.storage.limits import clip_text
from shared.storage.mail_outbox import KeptEmail, MailOutbox
from shared.storage.memory.notify import (
    MemoryAppHealth,
    MemoryDigests,
    MemoryMailOutbox,
    MemoryNotifyLedger,
    MemoryRules,
)
from shared.storage.notify_ledger import CLAIM_SECONDS, Busy, ClaimLost, NotifyLedger
from shared.storage.rules import RuleRepository


@pytest.fixture
def ledger(backend):
    return backend.repo(NotifyLedger, "Ledger", MemoryNotifyLedger)


@pytest.fixture
def digests(backend):
    return backend.repo(DigestRepository, "Digest", MemoryDigests)


@pytest.fixture
def rules(backend):
    return backend.repo(RuleRepository, "Rules", MemoryRules)


@pytest.fixture
def outbox(backend):
    return backend.repo(MailOutbox, "Outbox", MemoryMailOutbox)


@pytest.fixture
def health(backend):
    return backend.repo(AppHealth, "Health", MemoryAppHealth)


# the ledger ---------------------------------------------------------------------------

def test_a_claim_is_exclusive_while_fresh(ledger):
    claim = ledger.claim("rule", "event-1", {"Tenant": "t"})
    assert claim is not None and ledger.state("rule", "event-1") == "sending"
    with pytest.raises(Busy):
        ledger.claim("rule", "event-1", {"Tenant": "t"})
    assert ledger.state("rule", "other") is None


def test_racing_claims_have_one_winner(ledger):
    won: list[object] = []
    busy: list[Busy] = []

    def worker() -> None:
        try:
            won.append(ledger.claim("rule", "race", {}))
        except Busy as exc:
            busy.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and won[0] is not None and len(busy) == 5


@pytest.mark.parametrize("state", ["sent", "refused", "failed", "digested"])
def test_a_final_state_ends_the_email_and_is_never_overwritten(ledger, state):
    claim = ledger.claim("rule", "event", {})
    ledger.finish("rule", "event", claim, state, "why", [{"address": "a@b.example",
                                                          "reason": "550"}])
    assert ledger.state("rule", "event") == state
    assert ledger.claim("rule", "event", {}) is None  # a redelivery sends nothing
    with pytest.raises(ClaimLost):  # the same claim cannot write it again
        ledger.finish("rule", "event", claim, "failed")
    ledger.release("rule", "event", claim, "late")  # nor reopen it
    assert ledger.state("rule", "event") == state
    assert ledger.claim("rule", "event", {}) is None


def test_a_released_claim_is_taken_again_with_its_first_date(ledger):
    first = ledger.claim("rule", "event", {})
    ledger.release("rule", "event", first, "SMTP server unreachable")
    assert ledger.state("rule", "event") == "retry"
    again = ledger.claim("rule", "event", {})
    assert again is not None and again.first_at == first.first_at
    with pytest.raises(Busy):
        ledger.claim("rule", "event", {})
    ledger.finish("rule", "event", again, "sent")
    assert ledger.state("rule", "event") == "sent"


def test_an_expired_claim_is_taken_over_and_the_old_one_loses(ledger):
    long_ago = datetime.now(UTC) - timedelta(seconds=CLAIM_SECONDS + 1)
    dead = ledger.claim("ops", "notice", {}, now=long_ago)
    taken = ledger.claim("ops", "notice", {})
    assert taken is not None and taken.first_at == dead.first_at
    ledger.release("ops", "notice", dead, "too late")  # ignored: no longer its claim
    assert ledger.state("ops", "notice") == "sending"
    with pytest.raises(ClaimLost):
        ledger.finish("ops", "notice", dead, "sent")
    ledger.finish("ops", "notice", taken, "sent")
    assert ledger.state("ops", "notice") == "sent"


# digests ------------------------------------------------------------------------------

def _event(n: int) -> dict:
    return {"tenant": "t", "tenant_name": "Contoso", "change": "new",
            "alert": {"id": f"a{n}", "severity": "High", "title": f"alert {n}"}}


def test_holding_an_event_again_keeps_one_row(digests):
    digests.hold("rule", "k1", _event(1), ["a@x.example"])
    digests.hold("rule", "k1", _event(1), ["a@x.example"])
    digests.hold("rule", "k2", _event(2), ["b@x.example", "a@x.example"])
    held = digests.held("rule")
    assert [h.key for h in held] == ["k1", "k2"]
    assert held[0].event == _event(1) and held[1].recipients == ["b@x.example", "a@x.example"]
    assert all(h.batch == "" for h in held)
    assert digests.held("other rule") == [] and digests.last_sent("rule") is None


def test_a_batch_is_written_on_its_rows_and_a_stale_read_is_refused(digests):
    for n in range(120):  # more than one transaction
        digests.hold("rule", f"k{n:03d}", _event(n), ["a@x.example"])
    rows = digests.held("rule")
    digests.assign("rule", rows, "batch-1")
    assert {h.batch for h in digests.held("rule")} == {"batch-1"}
    assert {h.batch for h in rows} == {"batch-1"}
    stale = digests.held("rule")
    digests.hold("rule", "k000", _event(0), ["a@x.example"])  # changed since read
    with pytest.raises(RuntimeError):
        digests.assign("rule", stale[:1], "batch-2")


def test_draining_removes_the_rows_once_and_starts_the_window(digests):
    for n in range(3):
        digests.hold("rule", f"k{n}", _event(n), ["a@x.example"])
    rows = digests.held("rule")
    before = datetime.now(UTC) - timedelta(seconds=5)
    digests.drain("rule", rows)
    assert digests.held("rule") == []
    first = digests.last_sent("rule")
    assert first is not None and first >= before
    digests.drain("rule", rows)  # a repeat (a worker that died after draining) is harmless
    assert digests.held("rule") == [] and digests.last_sent("rule") >= first


def test_the_hourly_cap_counts_per_rule_and_hour(digests):
    now = datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    assert [digests.take_slot("rule", 3, now) for _ in range(4)] == [True, True, True, False]
    assert digests.take_slot("other", 3, now) is True
    assert digests.take_slot("rule", 3, now + timedelta(hours=1)) is True
    assert digests.held("rule") == []  # counters are not held events


# rules --------------------------------------------------------------------------------

def _rule(scope: str, name: str, **fields):
    return parse_rule({"name": name, "recipients": ["soc@mssp.example"], **fields}, scope)


def test_rules_are_kept_per_scope(rules):
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    b = rules.save(_rule(tenant, "B rule"))
    a = rules.save(_rule(tenant, "A rule", severities=["High"]))
    wide = rules.save(_rule(GLOBAL, "MSSP-wide"))
    assert [r.name for r in rules.list(tenant)] == ["A rule", "B rule"]
    assert rules.get(tenant, a.id) == a and rules.get(other, a.id) is None
    assert rules.get(GLOBAL, wide.id) == wide and rules.list(GLOBAL) == [wide]
    assert rules.get(tenant, "not-an-id") is None and rules.list(other) == []
    assert sorted(r.id for r in rules.all()) == sorted([a.id, b.id, wide.id])
    b.enabled = False
    rules.save(b)  # replaced
    assert rules.get(tenant, b.id).enabled is False
    assert rules.delete(tenant, b.id) is True and rules.delete(tenant, b.id) is False
    assert rules.delete(other, a.id) is False and rules.get(tenant, a.id) == a
    assert [r.id for r in rules.list(tenant)] == [a.id]


def test_a_tenant_gets_its_rules_and_the_mssp_wide_ones_that_take_it(rules):
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    own = rules.save(_rule(tenant, "own"))
    rules.save(_rule(tenant, "off", enabled=False))
    everyone = rules.save(_rule(GLOBAL, "everyone"))
    only_other = rules.save(_rule(GLOBAL, "only other", tenants=[other]))
    not_tenant = rules.save(_rule(GLOBAL, "all but tenant", exclude_tenants=[tenant]))
    assert sorted(r.id for r in rules.for_tenant(tenant)) == sorted([own.id, everyone.id])
    assert sorted(r.id for r in rules.for_tenant(other)) == sorted(
        [everyone.id, only_other.id, not_tenant.id])
    rules.delete(GLOBAL, everyone.id)  # this repository's own edit is seen at once
    assert [r.id for r in rules.for_tenant(tenant)] == [own.id]


def test_cluster_events_read_the_enabled_mssp_wide_rules_only(rules):
    tenant = str(uuid.uuid4())
    rules.save(_rule(tenant, "own"))
    wide = rules.save(_rule(GLOBAL, "wide", clusters="new", tenants=[tenant]))
    rules.save(_rule(GLOBAL, "off", clusters="new", enabled=False))
    assert [r.id for r in rules.mssp_wide()] == [wide.id]
    assert rules.mssp_wide()[0].clusters == "new"  # the option round-trips
    rules.delete(GLOBAL, wide.id)  # this repository's own edit is seen at once
    assert rules.mssp_wide() == []


# the outbox ---------------------------------------------------------------------------

def _kept(tenant: str, at: datetime, subject: str, **fields) -> KeptEmail:
    return KeptEmail(tenant_id=tenant, at=at, state=fields.pop("state", "sent"),
                     subject=subject, to="soc@mssp.example", text="body", rule="r1",
                     **fields)


def test_kept_emails_read_newest_first_within_the_window(outbox):
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    outbox.keep(_kept(tenant, now - timedelta(days=20), "too old"))
    for n in range(3):
        outbox.keep(_kept(tenant, now - timedelta(minutes=10 - n), f"mail {n}"))
    outbox.keep(_kept(other, now - timedelta(minutes=1), "other's",
                      state="refused: no valid recipient", event_id="e" * 600,
                      message_id="<m@x>",
                      refused=[{"address": "x@example.com\\n", "reason": "control"}]))
    assert [m.subject for m in outbox.recent(tenant, now=now)] == ["mail 2", "mail 1", "mail 0"]
    assert [m.subject for m in outbox.recent(tenant, limit=2, now=now)] == ["mail 2", "mail 1"]
    assert [m.subject for m in outbox.recent(now=now)] == [
        "other's", "mail 2", "mail 1", "mail 0"]
    (theirs,) = outbox.recent(other, now=now)
    assert theirs.state == "refused: no valid recipient" and theirs.rule == "r1"
    assert theirs.refused == [{"address": "x@example.com\\n", "reason": "control"}]
    assert theirs.event_id == "e" * 500 and theirs.message_id == "<m@x>"
    assert theirs.to == "soc@mssp.example" and theirs.text == "body"
    assert len(outbox.recent(tenant, days=30, now=now)) == 4


def test_a_kept_email_keeps_its_html_part_clipped_to_what_a_row_holds(outbox):
    tenant, now = str(uuid.uuid4()), datetime.now(UTC)
    small = "<html><body><p>Alert: <b>caf\u00e9</b></p></body></html>"
    outbox.keep(_kept(tenant, now - timedelta(minutes=2), "small", html=small))
    huge = "<p>\u00e9t\u00e9 \U0001F512</p>" * 5000  # beyond a string property's 32K units
    outbox.keep(_kept(tenant, now - timedelta(minutes=1), "huge", html=huge))
    outbox.keep(_kept(tenant, now, "plain only"))
    by_subject = {m.subject: m for m in outbox.recent(tenant, now=now)}
    assert by_subject["small"].html == small
    assert by_subject["huge"].html == clip_text(huge) and huge.startswith(by_subject["huge"].html)
    assert by_subject["plain only"].html == ""


def test_an_alerts_emails_are_read_by_the_alert_and_lists_stay_as_they_were(outbox):
    tenant, other, now = str(uuid.uuid4()), str(uuid.uuid4()), datetime.now(UTC)
    outbox.keep(_kept(tenant, now - timedelta(minutes=3), "about a/1",
                      alerts=[(tenant, "a/1"), (tenant, "a/1")], event_id="ev1"))
    outbox.keep(_kept(tenant, now - timedelta(minutes=2), "about a/10",
                      alerts=[(tenant, "a/10")]))
    outbox.keep(_kept("global", now - timedelta(minutes=1), "digest",
                      alerts=[(tenant, "a/1"), (other, "a/1")], html="<p>x</p>"))
    outbox.keep(_kept(tenant, now, "about nothing"))
    assert [m.subject for m in outbox.recent(now=now)] == [
        "about nothing", "digest", "about a/10", "about a/1"]
    assert len(outbox.recent(tenant, now=now)) == 3
    mine = outbox.for_alert(tenant, "a/1")
    assert [(m.subject, m.tenant_id) for m in mine] == [("digest", "global"),
                                                        ("about a/1", tenant)]
    assert mine[1].event_id == "ev1" and mine[1].to == "soc@mssp.example"
    assert mine[1].state == "sent" and mine[0].html == "" and mine[1].text == ""
    assert [m.subject for m in outbox.for_alert(other, "a/1")] == ["digest"]
    assert len(outbox.for_alert(tenant, "a/1", limit=1)) == 1
    assert outbox.for_alert(tenant, "a/404") == []


# the mail-health row -------------------------------------------------------------------

def test_the_mail_failure_row(health):
    assert health.mail_failure() is None
    health.mail_works()  # nothing to clear: fine
    at = datetime.now(UTC).replace(microsecond=0)
    health.mail_failed("SMTP server unreachable: " + "x" * 2000, at)
    reason, when = health.mail_failure()
    assert reason.startswith("SMTP server unreachable") and len(reason) == 1000
    assert when == at
    health.mail_failed("later failure")
    assert health.mail_failure()[0] == "later failure"
    health.mail_works()
    assert health.mail_failure() is None
