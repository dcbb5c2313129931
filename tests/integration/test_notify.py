"""Notification emails to a real SMTP server (aiosmtpd), parsed with the email package."""

from __future__ import annotations

import email
import json
import socket
import threading
import time
import uuid
from dataclasses import replace
from email import policy

import pytest
from aiosmtpd.controller import Controller

from devtools.simulator.alerts import AlertFactory
from shared import timefmt
from shared.ingest.events import build_event, tracked
from shared.messages import AlertEvent
from shared.notify.rules import GLOBAL, parse_rule
from shared.notify.transport import SmtpTransport, Transient
from shared.services import notifier_for
from shared.storage.notify_ledger import Busy
from tests.helpers import settings as make_settings

TITLE = "<script>alert(1)</script> Ünïcødé\r\nBcc: evil@attacker.example"


class Inbox:
    """An SMTP server that keeps what it receives; REFUSED addresses get a 550."""

    REFUSED = "refused@customer.example"

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[list[str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.REFUSED:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=policy.default))
        return "250 Message accepted"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The SMTP server on one port, which tests can take down and bring back."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox, self.port, self.controller = inbox, _port(), None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    inbox = Inbox()
    server = Server(inbox)
    server.start()
    yield inbox, server
    server.stop()


@pytest.fixture
def notifier(storage_env, smtp):
    _, server = smtp
    settings = make_settings(AzureWebJobsStorage=storage_env.connection_string,
                             MAIL_FROM="alerts@mssp.example", MAIL_REPLY_TO="soc@mssp.example",
                             MSSP_NAME="Contoso MSSP")
    transport = SmtpTransport("127.0.0.1", server.port, "none", timeout=5)
    return notifier_for(settings, transport)


def _event(tenant_id: str, change_of: dict | None = None, created_ago: float = 0,
           **alert_fields) -> AlertEvent:
    factory = AlertFactory(tenant_id, "customer.example")
    ticks = int((time.time() - created_ago) * 1e7)
    alert = {**factory.make(ticks), **alert_fields}
    version = timefmt.normalize(alert["lastUpdateTime"])
    old = None
    if change_of is not None:
        old = tracked({**alert, **change_of}, timefmt.shift(version, -60))
    return build_event(tenant_id, "Northwind <Traders>", alert, version, old,
                       tracked(alert, version))


def _rule(notifier, scope: str, **fields):
    body = {"name": "High alerts", "recipients": ["analyst@mssp.example"], **fields}
    return notifier.rules.save(parse_rule(body, scope))


def test_email_headers_parts_links_and_escaping(notifier, smtp):
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant, severities=["High"])
    event = _event(tenant, severity="High", title=TITLE)
    assert notifier.handle(event).sent == 1
    (message,) = inbox.messages
    subject = message["Subject"]
    assert "\r" not in subject and "\n" not in subject
    assert subject.startswith("[High] Northwind <Traders>:")
    assert "Ünïcødé" in subject and len(subject) <= 200
    assert message["Bcc"] is None and inbox.envelopes == [["analyst@mssp.example"]]
    for header in ("Message-ID", "Date", "From", "Reply-To"):
        assert message[header], header
    assert message["From"] == "alerts@mssp.example"
    assert message["Reply-To"] == "soc@mssp.example"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert TITLE.split("\r")[0] in text
    link = f"https://security.microsoft.com/alerts/{event.alert_id}?tid={tenant}"
    assert link in text and f'href="{link}"' in html
    assert event.alert["computerDnsName"] in text


def test_a_duplicate_event_sends_one_email(notifier, smtp):
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant)
    event = _event(tenant)
    assert notifier.handle(event).sent == 1
    again = notifier.handle(event)
    assert (again.sent, again.skipped) == (0, 1)
    assert len(inbox.messages) == 1


def test_two_workers_racing_on_one_event_send_one_email(notifier, smtp, storage_env):
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant)
    event = _event(tenant)
    outcomes: list[str] = []

    def worker() -> None:
        other = notifier_for(notifier.settings, notifier.transport)
        try:
            outcomes.append(f"sent {other.handle(event).sent}")
        except Busy:
            outcomes.append("busy")  # the host would retry it later

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(inbox.messages) == 1
    assert outcomes.count("sent 1") == 1
    assert notifier.handle(event).skipped == 1  # the retry of a busy one sends nothing


def test_smtp_down_then_up_loses_nothing(notifier, smtp):
    inbox, controller = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant)
    event = _event(tenant)
    controller.stop()
    with pytest.raises(Transient):
        notifier.handle(event)
    controller.start()
    assert notifier.handle(event).sent == 1
    assert len(inbox.messages) == 1


def test_a_refused_address_is_recorded_not_retried(notifier, smtp):
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant, recipients=[Inbox.REFUSED])
    event = _event(tenant)
    result = notifier.handle(event)
    assert result.refused == 1 and inbox.messages == []
    assert notifier.handle(event).skipped == 1  # not sent again, not retried
    kept = list(notifier.outbox.client.query_entities("PartitionKey eq @pk",
                                                      parameters={"pk": tenant}))
    assert kept[0]["State"].startswith("refused")


def test_matching_by_severity_group_status_and_change(notifier, smtp):
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant, name="new only", severities=["High"],
          device_groups=["Servers - Tier 0"])
    _rule(notifier, tenant, name="resolutions", on_new=False, on_update=True,
          statuses=["Resolved"], recipients=["lead@mssp.example"])
    assert notifier.handle(_event(tenant, severity="Low",
                                  rbacGroupName="Servers - Tier 0")).sent == 0
    assert notifier.handle(_event(tenant, severity="High",
                                  rbacGroupName="Kiosks")).sent == 0
    assert notifier.handle(_event(tenant, severity="High",
                                  rbacGroupName="Servers - Tier 0")).sent == 1
    resolved = _event(tenant, change_of={"status": "InProgress"}, status="Resolved",
                      severity="Low")
    assert notifier.handle(resolved).sent == 1
    assert inbox.envelopes[-1] == ["lead@mssp.example"]
    assert "updated" in inbox.messages[-1]["Subject"]


def test_new_recipients_only_get_alerts_raised_after_they_were_added(notifier, smtp):
    _inbox, _ = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant)
    assert notifier.handle(_event(tenant, created_ago=3600)).sent == 0
    assert notifier.handle(_event(tenant)).sent == 1


def test_mssp_wide_rules_choose_tenants(notifier, smtp):
    _inbox, _ = smtp
    included, excluded = str(uuid.uuid4()), str(uuid.uuid4())
    rule = _rule(notifier, GLOBAL, name=f"all but one {uuid.uuid4().hex[:6]}",
                 exclude_tenants=[excluded])
    try:
        assert notifier.handle(_event(included)).sent == 1
        assert notifier.handle(_event(excluded)).sent == 0
    finally:
        notifier.rules.delete(GLOBAL, rule.id)


def test_a_burst_of_1000_alerts_with_a_digest_rule_gives_one_email(notifier, smtp):
    from datetime import UTC, datetime, timedelta

    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    rule = _rule(notifier, tenant, name="digest", delivery="digest", digest_minutes=15)
    events = [_event(tenant, severity=("High", "Low")[i % 2]) for i in range(1000)]
    for event in events:
        assert notifier.handle(event).digested == 1
    assert notifier.handle(events[0]).skipped == 1  # a redelivery is not held twice
    assert inbox.messages == []
    assert notifier.send_digests() == {rule.id: 1000}
    assert notifier.send_digests() == {}  # nothing left, and the window has not passed
    (digest,) = inbox.messages
    assert digest["Subject"] == "[Digest] 1000 alerts for rule digest"
    text = digest.get_body(("plain",)).get_content()
    assert "Northwind <Traders>" in text and "High (500)" in text and "Low (500)" in text
    assert text.index("High (500)") < text.index("Low (500)")
    # new alerts wait for the next window
    notifier.handle(_event(tenant))
    assert notifier.send_digests() == {}
    later = datetime.now(UTC) + timedelta(minutes=16)
    assert notifier.send_digests(later) == {rule.id: 1}
    assert len(inbox.messages) == 2


def test_the_hourly_cap_rolls_the_overflow_into_the_next_digest(notifier, smtp):
    from datetime import UTC, datetime, timedelta

    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    rule = _rule(notifier, tenant, name="capped", max_per_hour=3)
    results = [notifier.handle(_event(tenant)) for _ in range(5)]
    assert sum(r.sent for r in results) == 3 and sum(r.digested for r in results) == 2
    assert len(inbox.messages) == 3
    assert notifier.send_digests(datetime.now(UTC) + timedelta(minutes=61)) == {rule.id: 2}
    assert inbox.messages[-1]["Subject"].startswith("[Digest] 2 alerts")


def test_a_digest_that_cannot_be_sent_now_is_sent_later_once(notifier, smtp):
    inbox, server = smtp
    tenant = str(uuid.uuid4())
    rule = _rule(notifier, tenant, name="digest later", delivery="digest")
    for _ in range(3):
        notifier.handle(_event(tenant))
    server.stop()
    assert notifier.send_digests() == {}
    server.start()
    assert notifier.send_digests() == {rule.id: 3}
    assert notifier.send_digests() == {}
    assert len(inbox.messages) == 1


def test_a_minimum_severity(notifier, smtp):
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant, min_severity="Medium")
    assert notifier.handle(_event(tenant, severity="Low")).sent == 0
    assert notifier.handle(_event(tenant, severity="Medium")).sent == 1
    assert notifier.handle(_event(tenant, severity="High")).sent == 1


def _stored_rule(notifier, scope: str, name: str, addresses: list[str]) -> str:
    """A rule row as an older version wrote it, bypassing today's validation."""
    import json
    from datetime import UTC, datetime

    rule_id = uuid.uuid4().hex
    added = datetime(2020, 1, 1, tzinfo=UTC).isoformat()
    notifier.rules.client.upsert_entity({
        "PartitionKey": scope, "RowKey": rule_id, "Body": json.dumps({
            "id": rule_id, "scope": scope, "name": name,
            "recipients": [{"address": a, "added_at": added} for a in addresses]})})
    notifier.rules.forget()
    return rule_id


def _ledger_row(notifier, rule_id: str, event_id: str):
    from shared.storage.notify_ledger import delivery_key

    return notifier.ledger.client.get_entity(*delivery_key(rule_id, event_id))


def test_a_stored_newline_address_is_refused_alone_and_every_other_email_goes(
        notifier, smtp, storage_env, monkeypatch):
    """Issue 16: `x@example.com\\n` beside a second recipient made building To raise, so no
    rule of the tenant emailed and the event was poisoned. Runs the notify function."""
    import json

    import azure.functions as func

    from shared import services
    from shared.config import get_settings
    from shared.services import poison_log_on

    inbox, server = smtp
    tenant = str(uuid.uuid4())
    bad = _stored_rule(notifier, tenant, "A stored bad address",
                       ["x@example.com\n", "ok@example.com"])
    good = _stored_rule(notifier, tenant, "B good rule", ["lead@mssp.example"])
    for key, value in {"AzureWebJobsStorage": storage_env.connection_string,
                       "MSSP_CLIENT_ID": "5a1c3b0e-6f0d-4e1a-9a52-3c0f5d9b7e21",
                       "MSSP_CLIENT_SECRET": "s3cret-value", "MAIL_TRANSPORT": "smtp",
                       "ONBOARDING_STATE_KEY": "test-state-key-0123456789-abcdefghijklmnop",
                       "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port),
                       "SMTP_SECURITY": "none", "MAIL_FROM": "alerts@mssp.example"}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    services.notifier.cache_clear()
    services.poison_log.cache_clear()
    from functions.notify import notify

    event = _event(tenant)
    body = event.to_message().encode()
    try:
        notify(func.QueueMessage(body=body))  # no exception: the host deletes the message
        notify(func.QueueMessage(body=body))  # a redelivery sends nothing more
    finally:
        get_settings.cache_clear()
        services.notifier.cache_clear()
        services.poison_log.cache_clear()
    assert sorted(map(sorted, inbox.envelopes)) == [["lead@mssp.example"], ["ok@example.com"]]
    row = _ledger_row(notifier, bad, event.event_id)
    assert row["State"] == "sent"
    (refused,) = json.loads(row["Refused"])
    assert refused["address"] == "x@example.com\\n" and "control character" in refused["reason"]
    assert _ledger_row(notifier, good, event.event_id)["State"] == "sent"
    kept = {r["Rule"]: r for r in notifier.outbox.client.query_entities(
        "PartitionKey eq @pk", parameters={"pk": tenant})}
    assert kept[bad]["To"] == "ok@example.com" and "x@example.com" in kept[bad]["Refused"]
    poisoned = list(poison_log_on(storage_env).rows.client.query_entities(
        "Tenant eq @t", parameters={"t": tenant}))
    assert poisoned == []


def test_a_rule_with_only_bad_addresses_is_recorded_refused_and_not_retried(notifier, smtp):
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    bad = _stored_rule(notifier, tenant, "only bad",
                       ["x@example.com\n", "a@b.example, c@d.example"])
    _stored_rule(notifier, tenant, "good", ["lead@mssp.example"])
    event = _event(tenant)
    result = notifier.handle(event)
    assert (result.sent, result.refused) == (1, 1)
    assert inbox.envelopes == [["lead@mssp.example"]]
    row = _ledger_row(notifier, bad, event.event_id)
    assert row["State"] == "refused" and row["Note"] == "no valid recipient"
    again = notifier.handle(event)
    assert (again.sent, again.skipped) == (0, 2)


class _DiesAfterAcceptance:
    """The real SMTP transport, then the worker dies before it can mark the ledger."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport

    def send(self, message):
        self.transport.send(message)
        raise SystemExit("worker killed")


def test_a_repeat_after_a_crash_is_the_same_message(notifier, smtp):
    from datetime import UTC, datetime, timedelta

    from shared.storage.notify_ledger import CLAIM_SECONDS, delivery_key

    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    rule = _rule(notifier, tenant)
    event = _event(tenant)
    dying = notifier_for(notifier.settings, _DiesAfterAcceptance(notifier.transport))
    with pytest.raises(SystemExit):
        dying.handle(event)
    with pytest.raises(Busy):  # the claim is fresh: the retry waits
        notifier.handle(event)
    pk, rk = delivery_key(rule.id, event.event_id)
    notifier.ledger.client.update_entity({
        "PartitionKey": pk, "RowKey": rk,
        "ClaimedAt": datetime.now(UTC) - timedelta(seconds=CLAIM_SECONDS + 1)})
    assert notifier.handle(event).sent == 1
    first, second = inbox.messages
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Date"] == second["Date"]
    assert first.as_bytes() == second.as_bytes()
    assert notifier.handle(event).skipped == 1


def test_a_failing_quit_after_acceptance_does_not_send_twice(notifier, smtp):
    """The server took the message; an error answer to QUIT is no reason to send it again
    (it was a Transient before, so the retry sent a second email)."""
    inbox, _ = smtp

    async def handle_QUIT(server, session, envelope):
        return "421 4.3.0 shutting down"

    inbox.handle_QUIT = handle_QUIT
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant)
    event = _event(tenant)
    assert notifier.handle(event).sent == 1
    del inbox.handle_QUIT
    assert notifier.handle(event).skipped == 1
    assert len(inbox.messages) == 1


def test_a_poisoned_event_names_the_mail_failure(notifier, smtp):
    _, server = smtp
    tenant = str(uuid.uuid4())
    _rule(notifier, tenant)
    server.stop()
    with pytest.raises(Transient):
        notifier.handle(_event(tenant))
    assert "SMTP server unreachable" in notifier.poison_reason()
    server.start()
    notifier.handle(_event(tenant))
    assert "no mail failure recorded" in notifier.poison_reason()


def test_an_ops_notice_is_emailed_once_even_by_racing_timers(notifier, smtp, storage_env):
    from shared.tenants.ops_notices import OpsNotices

    inbox, _ = smtp
    subject = f"Tenant onboarded: <Fabrikam> {uuid.uuid4().hex[:6]}"
    key = OpsNotices.on(storage_env, "ops@mssp.example").add(
        "tenant_onboarded", str(uuid.uuid4()), subject, "Fabrikam granted consent.")

    def timer() -> None:
        notifier_for(notifier.settings, notifier.transport).send_ops_notices()

    threads = [threading.Thread(target=timer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    notifier.send_ops_notices()
    mine = [m for m in inbox.messages if subject in m["Subject"]]
    assert len(mine) == 1
    assert mine[0]["To"] == "ops@mssp.example"
    assert "Fabrikam granted consent." in mine[0].get_content()
    row = notifier.notices.rows.get(key)
    assert row["Sent"] is True and row["State"] == "sent"


def test_ops_notices_wait_while_the_mail_server_is_down(notifier, smtp, storage_env):
    from shared.notify.transport import RecordOnly
    from shared.tenants.ops_notices import OpsNotices

    inbox, server = smtp
    subject = f"Tenant consent revoked: Litware {uuid.uuid4().hex[:6]}"
    key = OpsNotices.on(storage_env, "ops@mssp.example").add(
        "tenant_consent_revoked", str(uuid.uuid4()), subject, "Litware revoked consent.")
    assert notifier_for(notifier.settings, RecordOnly()).send_ops_notices() == {}
    server.stop()
    notifier.send_ops_notices()
    assert notifier.notices.rows.get(key)["Sent"] is False
    server.start()
    assert notifier.send_ops_notices()[key] == "sent"
    assert [m["Subject"] for m in inbox.messages if subject in m["Subject"]] != []


def test_an_email_that_cannot_be_built_fails_its_rule_alone(notifier, smtp, monkeypatch):
    """A template bug for one rule (simulated) is that rule's recorded failure."""
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    broken = _rule(notifier, tenant, name="A broken template")
    _rule(notifier, tenant, name="B fine", recipients=["lead@mssp.example"])
    real = notifier.message

    def message(event, rule, *args, **kwargs):
        if rule.id == broken.id:
            raise KeyError("severity_colour")
        return real(event, rule, *args, **kwargs)

    monkeypatch.setattr(notifier, "message", message)
    event = _event(tenant)
    result = notifier.handle(event)
    assert (result.sent, result.failed) == (1, 1)
    assert inbox.envelopes == [["lead@mssp.example"]]
    row = _ledger_row(notifier, broken.id, event.event_id)
    assert row["State"] == "failed" and "KeyError" in row["Note"]
    assert notifier.handle(event).skipped == 2


def test_a_digest_leaves_out_a_stored_bad_address(notifier, smtp):
    import json

    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    rule_id = _stored_rule(notifier, tenant, "digest with a bad address",
                           ["x@example.com\n", "ok@example.com"])
    row = notifier.rules.client.get_entity(tenant, rule_id)
    body = json.loads(row["Body"])
    notifier.rules.client.upsert_entity({**row, "Body": json.dumps(
        {**body, "delivery": "digest"})})
    notifier.rules.forget()
    for _ in range(2):
        assert notifier.handle(_event(tenant)).digested == 1
    assert notifier.send_digests()[rule_id] == 2
    (index,) = [i for i, m in enumerate(inbox.messages)
                if "digest with a bad address" in m["Subject"]]
    assert inbox.envelopes[index] == ["ok@example.com"]


def test_a_change_the_mssp_made_itself_emails_only_rules_that_ask_for_it(notifier, smtp):
    """Through Azurite and SMTP: the event as the queue carries it (`by` set by ingest),
    a rule stored before the option existed (ignores own changes), one that opts in."""
    inbox, _ = smtp
    tenant = str(uuid.uuid4())
    old = {"id": uuid.uuid4().hex, "scope": tenant, "name": "Stored earlier",
           "recipients": [{"address": "old@mssp.example",
                           "added_at": "2020-01-01T00:00:00+00:00"}],
           "on_new": True, "on_update": True}
    notifier.rules.client.upsert_entity({"PartitionKey": tenant, "RowKey": old["id"],
                                         "Body": json.dumps(old)})
    notifier.rules.forget()
    _rule(notifier, tenant, name="Audit", on_update=True, ignore_own_changes=False,
          recipients=["audit@mssp.example"])
    own = replace(_event(tenant, change_of={"status": "New"}, status="Resolved"),
                  by={"id": "oid-ann", "name": "Ann Analyst", "via": "entra"})
    assert notifier.handle(AlertEvent.parse(own.to_message())).sent == 1
    assert inbox.envelopes == [["audit@mssp.example"]]
    customers = _event(tenant, change_of={"status": "New"}, status="InProgress")
    assert notifier.handle(customers).sent == 2
    assert sorted(map(tuple, inbox.envelopes[1:])) == [("audit@mssp.example",),
                                                        ("old@mssp.example",)]
