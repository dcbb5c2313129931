"""Incident emails on the in-memory repositories: a rule's `incidents` option (new, or a
severity that rises), one email per incident version through the ledger however often
the event comes, hostile text escaped, the option validated and round-tripped."""

from __future__ import annotations

import pytest

from shared.messages import IncidentEvent, queue_events
from shared.notify.incidents import severity_rose
from shared.notify.rules import parse_rule
from shared.notify.service import Notifier
from shared.validation import ValidationError
from tests.helpers import settings as make_settings
from tests.unit.test_notifier import TENANT, FakeTransport, memory_stores


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def notifier(transport) -> Notifier:
    return Notifier(make_settings(MAIL_FROM="alerts@mssp.example", MSSP_NAME="Contoso MSSP"),
                    transport, memory_stores())

HOSTILE = "<script>alert(1)</script> & \"x\"\r\nBcc: evil@example.com"


def _event(version: str, severity: str, change: str = "new", before: str = "",
           name: str = "Multi-stage incident") -> IncidentEvent:
    changed = {"severity": [before, severity]} if before else {}
    return IncidentEvent(TENANT, "Northwind <b>", "1042", version, change, changed,
                         {"name": name, "severity": severity, "status": "active",
                          "assignee": "", "alertIds": ["ga1"], "alertCount": 1,
                          "tags": ["vip"], "createdDateTime": "2026-12-01T10:00:00Z",
                          "lastUpdateDateTime": version,
                          "webUrl": "https://security.microsoft.com/incidents/1042"},
                         previous="" if change == "new" else "2026-12-01T10:00:00.0000000Z")


def _rule(notifier, **fields):
    body = {"name": "incidents", "recipients": ["analyst@mssp.example"], **fields}
    return notifier.rules.save(parse_rule(body, TENANT))


def test_new_incident_then_severity_rise_each_emailed_once(notifier, transport):
    _rule(notifier, incidents="new_or_severity_rise", on_new=False)
    new = _event("2026-12-01T10:00:00.0000000Z", "medium")
    for _ in range(3):  # redelivered: the ledger holds it to one email
        notifier.handle_all([new])
    assert len(transport.sent) == 1
    assert "incident" in str(transport.sent[0]["Subject"])
    same = _event("2026-12-01T10:05:00.0000000Z", "medium", "updated")
    assert notifier.handle(same).sent == 0  # an update that raises nothing
    rose = _event("2026-12-01T10:10:00.0000000Z", "high", "updated", before="medium")
    assert severity_rose(rose)
    notifier.handle(rose)
    notifier.handle(rose)
    assert len(transport.sent) == 2
    assert "severity raised" in str(transport.sent[1]["Subject"])
    lowered = _event("2026-12-01T10:20:00.0000000Z", "low", "updated", before="high")
    assert notifier.handle(lowered).sent == 0


def test_rules_without_the_option_ignore_incidents_and_new_only_ignores_rises(
        notifier, transport):
    _rule(notifier)  # an alert rule
    _rule(notifier, incidents="new", min_severity="High")
    assert notifier.handle(_event("2026-12-01T10:00:00.0000000Z", "medium")).sent == 0
    rose = _event("2026-12-01T10:10:00.0000000Z", "high", "updated", before="medium")
    assert notifier.handle(rose).sent == 0
    assert notifier.handle(_event("2026-12-01T11:00:00.0000000Z", "high")).sent == 1


def test_hostile_incident_text_is_escaped_and_headers_stay_one_line(notifier, transport):
    _rule(notifier, incidents="new")
    notifier.handle(_event("2026-12-01T10:00:00.0000000Z", "high", name=HOSTILE))
    message = transport.sent[0]
    assert "\n" not in str(message["Subject"]) and message["Bcc"] is None
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Northwind &lt;b&gt;" in html


def test_option_validated_and_an_incident_only_rule_is_allowed():
    rule = parse_rule({"name": "i", "recipients": ["a@mssp.example"], "on_new": False,
                       "incidents": "new"}, TENANT)
    assert rule.incidents == "new"
    with pytest.raises(ValidationError):
        parse_rule({"name": "i", "recipients": ["a@mssp.example"], "incidents": "always"},
                   TENANT)
    with pytest.raises(ValidationError):
        parse_rule({"name": "i", "recipients": ["a@mssp.example"], "on_new": False},
                   TENANT)


def test_queue_events_reads_incident_and_alert_messages():
    event = _event("2026-12-01T10:00:00.0000000Z", "high")
    assert queue_events(event.to_message()) == [event]


def test_the_portal_form_sets_and_keeps_the_option():
    from shared.portal.rule_form import rule_from_form
    form = {"name": "i", "recipients": "a@mssp.example", "incidents_shown": "yes",
            "incidents": "new_or_severity_rise", "enabled": "yes"}
    rule = rule_from_form(form, TENANT)
    assert rule.incidents == "new_or_severity_rise" and not rule.on_new
    older_form = {"name": "i", "recipients": "a@mssp.example", "on_new": "yes",
                  "enabled": "yes"}
    assert rule_from_form(older_form, TENANT, existing=rule).incidents == \
        "new_or_severity_rise"
    with pytest.raises(ValidationError):
        rule_from_form({**form, "incidents": "<b>"}, TENANT)
