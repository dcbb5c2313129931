"""The alert email from a typed event: every event field the templates show reaches the
email (Jinja's lenient undefined would otherwise render a renamed field as nothing)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.messages import AlertEvent
from shared.notify.matching import matches
from shared.notify.render import render
from shared.notify.rules import parse_rule

TENANT = "0b9f2a6e-1c1d-4d6b-9c55-0d2a3f4e5a61"


def _event(change: str = "updated") -> AlertEvent:
    return AlertEvent.parse(AlertEvent(
        TENANT, "Northwind", "da42", "2026-11-30T10:00:00.0000000Z", change,
        {"status": ["New", "InProgress"]} if change == "updated" else {},
        {"id": "da42", "title": "Suspicious PowerShell", "severity": "High",
         "status": "InProgress", "category": "Execution"}).to_message())


def test_the_email_shows_the_event_it_was_built_from():
    event = _event()
    rule = parse_rule({"name": "High", "recipients": ["soc@mssp.example"]}, TENANT)
    message = render(event, rule, ["soc@mssp.example"], "alerts@mssp.example", "",
                     "Contoso MSSP", datetime(2026, 11, 30, tzinfo=UTC), "<id@mssp.example>")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert message["Subject"] == "[High] Northwind: updated: Suspicious PowerShell"
    assert message["X-MSSP-Hub-Event"] == event.event_id
    for body in (text, html):
        assert f"tenant {TENANT}." in body
        assert "status" in body and "New" in body and "InProgress" in body
    assert f"tid={TENANT}" in text


def test_a_rule_matches_on_the_typed_event():
    new_only = parse_rule({"name": "New", "recipients": ["a@b.example"], "on_update": False},
                          TENANT)
    assert matches(new_only, _event("new"))
    assert not matches(new_only, _event("updated"))


def test_the_email_links_to_the_alerts_page_in_the_portal_when_it_is_known():
    event = _event()
    rule = parse_rule({"name": "High", "recipients": ["soc@mssp.example"]}, TENANT)
    page = f"https://hub.example/api/portal/tenants/{TENANT}/alerts/da42"
    message = render(event, rule, ["soc@mssp.example"], "alerts@mssp.example", "",
                     "Contoso MSSP", datetime(2026, 11, 30, tzinfo=UTC), "<id@mssp.example>",
                     portal="https://hub.example/api/portal")
    assert f"Open in the Contoso MSSP portal: {page}" in message.get_body(
        ("plain",)).get_content()
    assert f'<a href="{page}">' in message.get_body(("html",)).get_content()
    without = parse_rule({"name": "H", "recipients": ["soc@mssp.example"],
                          "include_portal_link": False}, TENANT)
    plain = render(event, without, ["soc@mssp.example"], "alerts@mssp.example", "",
                   "Contoso MSSP", datetime(2026, 11, 30, tzinfo=UTC), "<id@mssp.example>",
                   portal="https://hub.example/api/portal").get_body(("plain",)).get_content()
    assert "/api/portal/" not in plain
