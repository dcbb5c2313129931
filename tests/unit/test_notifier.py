"""The Notifier's decisions on the in-memory repositories, with a transport that records
what it is handed (no Azurite, no SMTP): per-rule outcomes, at most one email per event
and rule, digests, the hourly cap, ops notices."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from devtools.simulator.alerts import AlertFactory
from shared import timefmt
from shared.ingest.events import build_event, tracked
from shared.messages import AlertEvent
from shared.notify.rules import GLOBAL, parse_rule
from shared.notify.service import OPS, Notifier, NotifyStores
from shared.notify.transport import Permanent, RecordOnly, Transient
from shared.portal.rule_form import rule_from_form
from shared.storage.memory.notify import (
    MemoryAppHealth,
    MemoryDigests,
    MemoryMailOutbox,
    MemoryNotifyLedger,
    MemoryRules,
)
from shared.storage.notify_ledger import Busy
from tests.helpers import settings as make_settings


class FakeTransport:
    """Records each message handed over. `refuse`: addresses the server refuses (all of
    them refused: Permanent); `down`: every send is a Transient failure."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}
        self.down = False
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> dict[str, str]:
        if self.down:
            raise Transient("SMTP server unreachable: ConnectionRefusedError")
        to = [a.strip() for a in str(message["To"]).split(",")]
        refused = {a: self.refuse[a] for a in to if a in self.refuse}
        if len(refused) == len(to):
            raise Permanent("every recipient refused", refused)
        with self._lock:
            self.sent.append(message)
        return refused

    def to(self) -> list[list[str]]:
        return [[a.strip() for a in str(m["To"]).split(",")] for m in self.sent]


class FakeNotices:
    """OpsNotices' pending/mark: `lose_marks` keeps a notice pending after it is marked
    (a worker that died before marking it)."""

    def __init__(self, *rows: dict[str, Any]) -> None:
        self.rows = {r["RowKey"]: {"Sent": False, **r} for r in rows}
        self.marks: list[tuple[str, str]] = []
        self.lose_marks = False

    def pending(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows.values() if not r["Sent"]]

    def mark(self, key: str, state: str) -> None:
        self.marks.append((key, state))
        if not self.lose_marks:
            self.rows[key].update(Sent=True, State=state)


@pytest.fixture
def settings():
    return make_settings(MAIL_FROM="alerts@mssp.example", MAIL_REPLY_TO="soc@mssp.example",
                         MSSP_NAME="Contoso MSSP", OPS_EMAIL="ops@mssp.example")


def memory_stores() -> NotifyStores:
    """The notifier's stores on the in-memory fakes (the other notify tests use it too)."""
    return NotifyStores(rules=MemoryRules(), ledger=MemoryNotifyLedger(),
                        digests=MemoryDigests(), outbox=MemoryMailOutbox(),
                        health=MemoryAppHealth(), notices=FakeNotices())


@pytest.fixture
def stores() -> NotifyStores:
    return memory_stores()


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def notifier(settings, transport, stores) -> Notifier:
    return Notifier(settings, transport, stores)


TENANT = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"


def _event(tenant: str = TENANT, created_ago: float = 0, **alert_fields) -> AlertEvent:
    factory = AlertFactory(tenant, "customer.example")
    alert = {**factory.make(int((time.time() - created_ago) * 1e7)), **alert_fields}
    version = timefmt.normalize(alert["lastUpdateTime"])
    return build_event(tenant, "Northwind", alert, version, None, tracked(alert, version))


def _rule(notifier: Notifier, name: str, scope: str = TENANT, **fields):
    body = {"name": name, "recipients": ["analyst@mssp.example"], **fields}
    return notifier.rules.save(parse_rule(body, scope))


def _stored_rule(notifier: Notifier, name: str, addresses: list[str], **fields) -> str:
    """A rule as an older version stored it, with addresses today's validation refuses."""
    rule_id = uuid.uuid4().hex
    added = datetime(2020, 1, 1, tzinfo=UTC).isoformat()
    notifier.rules.put_raw(TENANT, rule_id, {
        "id": rule_id, "scope": TENANT, "name": name, **fields,
        "recipients": [{"address": a, "added_at": added} for a in addresses]})
    return rule_id


def _kept(stores: NotifyStores, tenant: str = TENANT) -> dict[str, Any]:
    return {m.rule: m for m in stores.outbox.recent(tenant)}


# one rule's trouble is its own ---------------------------------------------------------

def test_each_rule_gets_its_own_outcome(notifier, transport, stores, monkeypatch):
    only_bad = _stored_rule(notifier, "A only bad", ["x@example.com\n"])
    mixed = _stored_rule(notifier, "B mixed", ["x@example.com\n", "ok@example.com"])
    transport.refuse["gone@customer.example"] = "550 5.1.1 no such user"
    server_refused = _rule(notifier, "C refused by the server",
                           recipients=["gone@customer.example"])
    partly = _rule(notifier, "D partly refused",
                   recipients=["gone@customer.example", "lead@mssp.example"])
    broken = _rule(notifier, "E broken template")
    good = _rule(notifier, "F good")
    real = notifier.message

    def message(event, rule, *args, **kwargs):
        if rule.id == broken.id:
            raise KeyError("severity_colour")
        return real(event, rule, *args, **kwargs)

    monkeypatch.setattr(notifier, "message", message)
    event = _event()
    result = notifier.handle(event)
    assert (result.sent, result.refused, result.failed) == (3, 2, 1)
    assert result.refused_recipients == 2  # B's bad address, D's refused one
    assert sorted(transport.to()) == [["analyst@mssp.example"],
                                      ["gone@customer.example", "lead@mssp.example"],
                                      ["ok@example.com"]]
    ledger = stores.ledger
    states = {r: ledger.state(r, event.event_id) for r in (
        only_bad, mixed, server_refused.id, partly.id, broken.id, good.id)}
    assert states == {only_bad: "refused", mixed: "sent", server_refused.id: "refused",
                      partly.id: "sent", broken.id: "failed", good.id: "sent"}
    assert ledger.row(only_bad, event.event_id)["Note"] == "no valid recipient"
    assert "KeyError" in ledger.row(broken.id, event.event_id)["Note"]
    (refused,) = json.loads(ledger.row(partly.id, event.event_id)["Refused"])
    assert refused == {"address": "gone@customer.example", "reason": "550 5.1.1 no such user"}
    kept = _kept(stores)
    assert kept[mixed].state == "sent" and kept[mixed].to == "ok@example.com"
    assert kept[mixed].refused[0]["address"] == "x@example.com\\n"
    assert kept[server_refused.id].state.startswith("refused")
    assert kept[broken.id].state.startswith("failed: cannot build the email: KeyError")
    again = notifier.handle(event)  # nothing is retried, nothing sent twice
    assert (again.sent, again.skipped) == (0, 6) and len(transport.sent) == 3


def test_a_mail_server_down_holds_back_no_digest_and_loses_nothing(notifier, transport,
                                                                   stores):
    each = _rule(notifier, "each")
    digest = _rule(notifier, "digest", delivery="digest")
    transport.down = True
    event = _event()
    with pytest.raises(Transient):
        notifier.handle(event)
    assert stores.ledger.state(digest.id, event.event_id) == "digested"
    assert stores.ledger.state(each.id, event.event_id) == "retry"
    assert "SMTP server unreachable" in notifier.poison_reason()
    transport.down = False
    result = notifier.handle(event)  # the queue's retry
    assert (result.sent, result.skipped, result.digested) == (1, 1, 0)
    assert len(transport.sent) == 1
    assert "no mail failure recorded" in notifier.poison_reason()


def test_a_retry_is_the_same_message(notifier, transport, stores):
    from email.utils import parsedate_to_datetime

    rule = _rule(notifier, "each")
    event = _event()
    first_try = datetime(2026, 1, 1, 9, 30, tzinfo=UTC)
    claim = stores.ledger.claim(rule.id, event.event_id, {}, now=first_try)
    stores.ledger.release(rule.id, event.event_id, claim, "SMTP server unreachable")
    assert notifier.handle(event).sent == 1
    (sent,) = transport.sent
    assert parsedate_to_datetime(sent["Date"]) == first_try  # the first claim's Date
    again = notifier.message(event, rule, ["analyst@mssp.example"])
    assert sent["Message-ID"] == again["Message-ID"]


# at most once --------------------------------------------------------------------------

def test_a_redelivered_event_sends_nothing_twice(notifier, transport):
    _rule(notifier, "each")
    _rule(notifier, "wide", scope=GLOBAL, recipients=["lead@mssp.example"])
    event = _event()
    assert notifier.handle(event).sent == 2
    for _ in range(3):
        again = notifier.handle(event)
        assert (again.sent, again.skipped) == (0, 2)
    assert len(transport.sent) == 2


def test_racing_workers_on_one_event_send_one_email(settings, transport, stores):
    Notifier(settings, transport, stores).rules.save(
        parse_rule({"name": "r", "recipients": ["analyst@mssp.example"]}, TENANT))
    event = _event()
    outcomes: list[str] = []

    def worker() -> None:
        try:
            outcomes.append(f"sent {Notifier(settings, transport, stores).handle(event).sent}")
        except Busy:
            outcomes.append("busy")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(transport.sent) == 1 and outcomes.count("sent 1") == 1


def test_an_abandoned_claim_is_taken_over_after_it_expires(notifier, transport, stores):
    from shared.storage.notify_ledger import CLAIM_SECONDS

    rule = _rule(notifier, "each")
    event = _event()
    stores.ledger.claim(rule.id, event.event_id, {},  # a worker that died sending
                        now=datetime.now(UTC) - timedelta(seconds=CLAIM_SECONDS + 1))
    assert notifier.handle(event).sent == 1 and len(transport.sent) == 1


def test_a_fresh_claim_of_another_worker_makes_the_event_wait(notifier, transport, stores):
    busy = _rule(notifier, "A busy one")
    _rule(notifier, "B free one", recipients=["lead@mssp.example"])
    event = _event()
    stores.ledger.claim(busy.id, event.event_id, {})
    with pytest.raises(Busy):
        notifier.handle(event)
    assert transport.to() == [["lead@mssp.example"]]  # the other rule went all the same


# digests and the hourly cap -------------------------------------------------------------

def test_a_digest_rule_sends_one_email_per_window(notifier, transport, stores):
    rule = _rule(notifier, "digest", delivery="digest", digest_minutes=15)
    events = [_event(severity=("High", "Low")[i % 2]) for i in range(6)]
    for event in events:
        assert notifier.handle(event).digested == 1
    assert notifier.handle(events[0]).skipped == 1  # a redelivery is not held twice
    assert transport.sent == []
    assert notifier.send_digests() == {rule.id: 6}
    assert notifier.send_digests() == {}
    (digest,) = transport.sent
    assert digest["Subject"] == "[Digest] 6 alerts for rule digest"
    text = digest.get_body(("plain",)).get_content()
    assert "High (3)" in text and "Low (3)" in text
    notifier.handle(_event())
    assert notifier.send_digests() == {}  # the window has not passed
    assert notifier.send_digests(datetime.now(UTC) + timedelta(minutes=16)) == {rule.id: 1}
    assert len(transport.sent) == 2
    assert stores.digests.held(rule.id) == []


def test_each_alerts_emails_are_found_by_the_alert_each_and_digest(notifier, stores):
    each = _rule(notifier, "each")
    digest = _rule(notifier, "digest", delivery="digest")
    first, second = _event(), _event()
    notifier.handle(first)
    notifier.handle(second)
    notifier.send_digests()
    mine = stores.outbox.for_alert(TENANT, first.alert_id)
    assert sorted(m.rule for m in mine) == sorted([each.id, digest.id])
    assert [m.rule for m in stores.outbox.for_alert(TENANT, second.alert_id)
            if m.rule == each.id] == [each.id]
    assert {m.event_id for m in mine if m.rule == each.id} == {first.event_id}


def test_a_batch_left_by_a_dead_worker_is_sent_first_and_alone(notifier, transport, stores):
    rule = _rule(notifier, "digest", delivery="digest")
    for _ in range(2):
        notifier.handle(_event())
    stores.digests.assign(rule.id, stores.digests.held(rule.id), "dead-worker-batch")
    notifier.handle(_event())
    assert notifier.send_digests() == {rule.id: 2}
    assert notifier.send_digests(datetime.now(UTC) + timedelta(minutes=61)) == {rule.id: 1}
    assert [m["Subject"] for m in transport.sent] == [
        "[Digest] 2 alerts for rule digest", "[Digest] 1 alerts for rule digest"]


def test_a_digest_the_server_cannot_take_now_goes_later_once(notifier, transport):
    rule = _rule(notifier, "digest", delivery="digest")
    for _ in range(3):
        notifier.handle(_event())
    transport.down = True
    assert notifier.send_digests() == {}
    transport.down = False
    assert notifier.send_digests() == {rule.id: 3}
    assert notifier.send_digests() == {} and len(transport.sent) == 1


def test_the_hourly_cap_rolls_the_overflow_into_the_next_digest(notifier, transport):
    rule = _rule(notifier, "capped", max_per_hour=2)
    results = [notifier.handle(_event()) for _ in range(5)]
    assert [r.sent for r in results] == [1, 1, 0, 0, 0]
    assert sum(r.digested for r in results) == 3 and len(transport.sent) == 2
    assert notifier.send_digests() == {rule.id: 3}  # no digest went before: at once
    assert transport.sent[-1]["Subject"].startswith("[Digest] 3 alerts")
    assert [notifier.handle(_event()).digested for _ in range(2)] == [1, 1]
    assert notifier.send_digests() == {}  # then an "each" rule's overflow waits an hour
    assert notifier.send_digests(datetime.now(UTC) + timedelta(minutes=61)) == {rule.id: 2}
    assert len(transport.sent) == 4


# ops notices ---------------------------------------------------------------------------

def _notice(key: str = "20260101T000000.000000Z:ab12", **fields) -> dict[str, Any]:
    return {"RowKey": key, "Kind": "tenant_onboarded", "Tenant": TENANT,
            "Subject": "Tenant onboarded: Fabrikam", "Body": "Fabrikam granted consent.",
            **fields}


def test_an_ops_notice_is_emailed_once(settings, transport, stores):
    stores.notices = notices = FakeNotices(_notice())
    notices.lose_marks = True  # marked, but the mark did not stick
    notifier = Notifier(settings, transport, stores)
    key = _notice()["RowKey"]
    assert notifier.send_ops_notices() == {key: "sent"}
    assert notifier.send_ops_notices() == {key: "sent"}  # the ledger knows: no second email
    assert len(transport.sent) == 1 and notices.marks == [(key, "sent"), (key, "sent")]
    (message,) = transport.sent
    assert message["To"] == "ops@mssp.example"
    assert message["Subject"] == "[Contoso MSSP] Tenant onboarded: Fabrikam"
    assert "Fabrikam granted consent." in message.get_content()
    assert [m.state for m in stores.outbox.recent(OPS)] == ["sent"]


def test_ops_notices_wait_while_mail_is_down_or_not_configured(settings, transport, stores):
    stores.notices = notices = FakeNotices(_notice("k1"), _notice("k2", To="lead@mssp.example"))
    assert Notifier(settings, RecordOnly(), stores).send_ops_notices() == {}
    notifier = Notifier(settings, transport, stores)
    transport.down = True
    assert notifier.send_ops_notices() == {} and notices.marks == []
    transport.down = False
    assert notifier.send_ops_notices() == {"k1": "sent", "k2": "sent"}
    assert transport.to() == [["ops@mssp.example"], ["lead@mssp.example"]]
    assert notifier.send_ops_notices() == {}


def test_an_ops_notice_nobody_can_get_is_marked_refused(settings, transport, stores):
    stores.notices = notices = FakeNotices(_notice("k1", To="gone@customer.example"))
    transport.refuse["gone@customer.example"] = "550 no such user"
    assert Notifier(settings, transport, stores).send_ops_notices() == {"k1": "refused"}
    assert notices.marks == [("k1", "refused")] and transport.sent == []


# no mail transport: kept locally, whole ------------------------------------------------

def test_without_a_transport_each_email_is_kept_locally_whole_once(settings, stores):
    notifier = Notifier(settings, RecordOnly(), stores)
    rule = _rule(notifier, "Kept", recipients=["analyst@mssp.example"])
    event = _event(title="<script>alert(1)</script> on a server")
    result = notifier.handle(event)
    assert (result.kept, result.sent, result.refused) == (1, 0, 0)
    assert notifier.handle(event).skipped == 1  # redelivered: not kept twice
    (kept,) = stores.outbox.recent(TENANT)
    assert kept.state == "kept locally" and kept.rule == rule.id
    assert kept.to == "analyst@mssp.example"
    assert "<html" in kept.html.lower() and "&lt;script&gt;" in kept.html  # as it would arrive
    assert "<script>alert(1)</script> on a server" in kept.text
    assert notifier.mail_health.store.mail_failure() is None  # not a mail failure


def test_a_rule_test_is_kept_in_the_outbox_sent_or_not(settings, transport, stores):
    kept = Notifier(settings, RecordOnly(), stores)
    rule = _rule(kept, "Tested", recipients=["analyst@mssp.example"])
    outcome = kept.send_test(rule)
    assert (outcome.state, outcome.to) == ("kept", ["analyst@mssp.example"])
    sent = Notifier(settings, transport, stores).send_test(rule)
    assert sent.state == "sent" and len(transport.sent) == 1
    rows = stores.outbox.recent(TENANT)
    assert sorted(m.state for m in rows) == ["kept locally", "sent"]
    assert all(m.rule == rule.id and "Test email for rule Tested" in m.subject
               and m.html for m in rows)


def test_a_batch_is_handled_event_by_event_and_retried_whole_once_done(notifier, transport,
                                                                        stores):
    _rule(notifier, "each")
    events = [_event() for _ in range(3)]
    real_send = transport.send
    calls = []

    def flaky(message):  # the second email meets a server hiccup
        calls.append(message)
        if len(calls) == 2:
            raise Transient("SMTP server unreachable: timeout")
        return real_send(message)

    transport.send = flaky
    with pytest.raises(Transient):
        notifier.handle_all(events)  # the third still went out before the raise
    assert len(transport.sent) == 2
    results = notifier.handle_all(events)  # the queue's retry of the whole batch
    assert [(r.sent, r.skipped) for r in results] == [(0, 1), (1, 0), (0, 1)]
    assert len(transport.sent) == 3  # one email per event, none twice


# changes the MSSP made itself ------------------------------------------------------------
def test_a_rule_ignores_the_mssps_own_changes_unless_it_asks_for_them(notifier, transport):
    _rule(notifier, "quiet", on_update=True)  # ignore_own_changes: on by default
    _rule(notifier, "everything", on_update=True, ignore_own_changes=False,
          recipients=["audit@mssp.example"])
    _stored_rule(notifier, "stored before the option", ["old@mssp.example"], on_new=True,
                 on_update=True)
    own = replace(_event(), by={"id": "oid-ann", "name": "Ann", "via": "entra"})
    assert notifier.handle(own).sent == 1
    assert transport.to() == [["audit@mssp.example"]]
    assert notifier.handle(_event()).sent == 3  # the customer's: every rule


def test_the_portal_form_shows_and_keeps_the_own_changes_option():
    form = {"name": "n", "recipients": "a@x.example", "on_new": "yes", "own_shown": "yes"}
    assert rule_from_form(form, TENANT).ignore_own_changes is False  # box unchecked
    checked = rule_from_form({**form, "ignore_own_changes": "yes"}, TENANT)
    assert checked.ignore_own_changes is True
    older_form = {k: v for k, v in form.items() if k != "own_shown"}  # without the box
    assert rule_from_form(older_form, TENANT).ignore_own_changes is True
    kept = parse_rule({"name": "n", "recipients": ["a@x.example"],
                       "ignore_own_changes": False}, TENANT)
    assert rule_from_form(older_form, TENANT, existing=kept).ignore_own_changes is False
