"""Every consumer the same whichever API stored an alert: a Graph alerts_v2 document gives
the email, CEF line, ECS document, pull item, webhook body, Alerts row, index entry, list
row and alert page its Defender for Endpoint twin gives, but for the product (and the
schema named where a consumer names it); a rule on product matches only that product;
hostile v2 text is escaped in every output as today."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape
from typing import Any

import pytest

from shared.alerts.view import GRAPH, MDE, AlertView
from shared.ingest.events import build_event, tracked
from shared.messages import AlertEvent
from shared.notify.matching import matches
from shared.notify.render import render
from shared.notify.rules import parse_rule
from shared.portal import alert_page
from shared.portal.queries import _row
from shared.portal.rule_form import form_body
from shared.siem.cef import format_cef, labelled, parse_cef
from shared.siem.ecs import to_ecs
from shared.siem.outputs import parse_outputs
from shared.siem.pull import item
from shared.siem.senders import document
from shared.storage.alert_index import entry_of
from shared.storage.alert_rows import alert_rows
from shared.storage.siem_feed import decode, entry_entity
from shared.validation import ValidationError
from tests.alert_docs import (
    HOSTILE,
    TENANT,
    graph_alert,
    hostile,
    identity_alert,
    mde_alert,
    office_alert,
)

WHEN = datetime(2026, 12, 3, 8, tzinfo=UTC)
STAMP = int(WHEN.timestamp() * 1_000_000)
RULE = parse_rule({"name": "All", "recipients": ["soc@mssp.example"], "on_update": True},
                  TENANT)


def _version(doc: dict[str, Any], schema: str) -> str:
    return alert_rows(TENANT, doc, WHEN, schema=schema)[0]["Version"]


def _event(doc: dict[str, Any], schema: str, change: str = "new") -> AlertEvent:
    version = _version(doc, schema)
    new = tracked(doc, version, schema)
    old = None if change == "new" else [version, "New", None, None, None, "Low"]
    return AlertEvent.parse(build_event(TENANT, "Northwind", doc, version, old, new,
                                        schema=schema).to_message())


def _feed_event(doc: dict[str, Any], schema: str, complete: bool = True) -> dict[str, Any]:
    """The event as the SIEM feed gives it: the stored alert copied whole (as received),
    else the summary."""
    event = _event(doc, schema)
    rows = alert_rows(TENANT, doc, WHEN, schema=schema)
    raw = {k: v for k, v in rows[0].items() if k.startswith("Body") and k[4:].isdigit()}
    return decode(entry_entity(event, STAMP, raw if complete else None))


def _email(event: AlertEvent) -> tuple[str, str, str]:
    message = render(event, RULE, ["soc@mssp.example"], "alerts@mssp.example", "",
                     "Contoso MSSP", WHEN, "<id@mssp.example>",
                     portal="https://hub.example/api/portal")
    return (str(message["Subject"]), message.get_body(("plain",)).get_content(),
            message.get_body(("html",)).get_content())


def test_the_event_and_its_tracked_fields_are_the_same():
    mde, graph = _event(mde_alert(), MDE), _event(graph_alert(), GRAPH)
    assert (mde.alert_id, mde.version, mde.event_id) == (graph.alert_id, graph.version,
                                                          graph.event_id)
    assert {**mde.alert, "schema": GRAPH} == graph.alert
    assert tracked(mde_alert(), "v", MDE) == tracked(graph_alert(), "v", GRAPH)


@pytest.mark.parametrize("change", ["new", "updated"])
def test_the_email_is_byte_for_byte_its_twins(change: str):
    mde = _email(_event(mde_alert(), MDE, change))
    graph = _email(_event(graph_alert(), GRAPH, change))
    assert mde == graph
    assert "Product:" not in mde[1]  # Defender for Endpoint's emails stay as they were


def test_the_email_names_another_product():
    subject, text, html = _email(_event(office_alert(), GRAPH))
    assert subject.startswith("[Medium] Northwind: Email messages containing malicious URL")
    assert "Product:           Microsoft Defender for Office 365" in text
    assert "<th align=\"left\">Product</th><td>Microsoft Defender for Office 365</td>" in html
    assert "MailMessage: " in text and "Status:            InProgress" in text


def test_hostile_v2_text_is_escaped_in_the_email():
    subject, text, html = _email(_event(hostile(graph_alert(), GRAPH), GRAPH))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "\r" not in subject and "\n" not in subject and "Bcc" in subject
    assert HOSTILE.replace("\x00", "") not in subject
    twin_subject, twin_text, twin_html = _email(_event(hostile(mde_alert(), MDE), MDE))
    assert (subject, text, html) == (twin_subject, twin_text, twin_html)


@pytest.mark.parametrize("complete", [True, False])
def test_cef_is_its_twins_and_names_the_product(complete: bool):
    mde = format_cef(_feed_event(mde_alert(), MDE, complete))
    graph = format_cef(_feed_event(graph_alert(), GRAPH, complete))
    assert mde == graph
    header, ext = parse_cef(mde)
    assert header[:3] == ["0", "Microsoft", "Defender for Endpoint"]
    assert ext["dhost"] == "tempmachine1" and ext["cn1"] == "28282"
    assert ext["fileHash"].startswith("4d0b8e") and ext["src"] == "203.0.113.7"
    office = parse_cef(format_cef(_feed_event(office_alert(), GRAPH, complete)))
    assert office[0][1:3] == ["Microsoft", "Defender for Office 365"]
    assert office[0][6] == "5"  # Medium
    assert office[1]["src"] == "198.51.100.23"
    assert office[1]["request"] == "https://phish.example/login"


def test_hostile_v2_text_round_trips_in_cef():
    line = format_cef(_feed_event(hostile(graph_alert(), GRAPH), GRAPH))
    assert "\n" not in line and "\r" not in line
    _, ext = parse_cef(line)
    assert ext["msg"] == HOSTILE and ext["dhost"] == HOSTILE
    assert labelled(ext)["DeviceGroup"] == HOSTILE
    assert line == format_cef(_feed_event(hostile(mde_alert(), MDE), MDE))


def test_ecs_is_its_twins_but_for_the_original_and_names_the_product():
    mde = to_ecs(_feed_event(mde_alert(), MDE))
    graph = to_ecs(_feed_event(graph_alert(), GRAPH))
    assert "defender_endpoint" in mde["microsoft"]
    assert graph["microsoft"]["graph_security_alert"]["serviceSource"] == \
        "microsoftDefenderForEndpoint"  # the alert as received
    assert {k: v for k, v in mde.items() if k != "microsoft"} == \
        {k: v for k, v in graph.items() if k != "microsoft"}
    assert mde["observer"]["product"] == "Defender for Endpoint"
    assert mde["event"]["severity"] == 47 and mde["host"]["hostname"] == "tempmachine1"
    identity = to_ecs(_feed_event(identity_alert(), GRAPH))
    assert identity["observer"]["product"] == "Defender for Identity"
    assert identity["event"]["severity"] == 99
    assert identity["host"]["hostname"] == "dc01.contoso.local"


def test_the_pull_item_and_webhook_body_carry_schema_and_product():
    mde = item(_feed_event(mde_alert(), MDE)).model_dump(mode="json")
    graph = item(_feed_event(graph_alert(), GRAPH)).model_dump(mode="json")
    assert (mde["schema"], graph["schema"]) == ("mde", "graph")
    assert mde["product"] == graph["product"] == "Microsoft Defender for Endpoint"
    assert graph["alert"] == graph_alert() and graph["alert_complete"] is True
    assert {k: v for k, v in mde.items() if k not in ("schema", "alert")} == \
        {k: v for k, v in graph.items() if k not in ("schema", "alert")}
    office = item(_feed_event(office_alert(), GRAPH, complete=False)).model_dump(mode="json")
    assert office["product"] == "Microsoft Defender for Office 365"
    assert office["alert"]["severity"] == "Medium"  # the summary: canonical spelling
    output = parse_outputs('[{"name": "hook", "type": "webhook", "url": '
                           '"http://127.0.0.1:9/x", "secret_setting": "SIEM_HOOK_B"}]',
                           {"SIEM_HOOK_B": "x" * 20})[0]
    body = document(output, _feed_event(office_alert(), GRAPH))
    assert (body["schema"], body["product"]) == ("graph", "Microsoft Defender for Office 365")
    assert document(output, _feed_event(mde_alert(), MDE))["schema"] == "mde"


def test_the_row_and_index_entry_have_the_same_columns():
    mde = alert_rows(TENANT, mde_alert(), WHEN)[0]
    graph = alert_rows(TENANT, graph_alert(), WHEN, schema=GRAPH)[0]
    body = re.compile(r"Body\d\d|BodyBytes")
    assert (mde["Schema"], graph["Schema"]) == ("mde", "graph")
    assert {k: v for k, v in mde.items() if not body.fullmatch(k) and k != "Schema"} == \
        {k: v for k, v in graph.items() if not body.fullmatch(k) and k != "Schema"}
    assert entry_of(mde) == entry_of(graph)
    assert _row("Northwind", entry_of(mde)) == _row("Northwind", entry_of(graph))
    office = alert_rows(TENANT, office_alert(), WHEN, schema=GRAPH)[0]
    assert (office["Severity"], office["Status"], office["IncidentId"]) == ("Medium",
                                                                           "InProgress", 31337)
    row = _row("Northwind", entry_of(office))
    assert row.product == "Microsoft Defender for Office 365" and row.severity == "Medium"
    assert _row("Northwind", entry_of(mde)).product == ""


def test_the_alert_page_reads_the_same():
    mde, graph = AlertView.of(mde_alert(), MDE), AlertView.of(graph_alert(), GRAPH)
    assert alert_page.shown(mde) == alert_page.shown(graph)
    assert alert_page.shown(mde)["product"] == "Microsoft Defender for Endpoint"
    strip = [{**vars(r), "verdict": ""} for r in alert_page.evidence_rows(mde)]
    assert strip == [{**vars(r), "verdict": ""} for r in alert_page.evidence_rows(graph)]
    assert [r.verdict for r in alert_page.evidence_rows(graph)][1:3] == ["Suspicious",
                                                                          "Malicious"]
    for read in (alert_page.comments, alert_page.related_user, alert_page.techniques):
        assert read(mde) == read(graph)
    assert alert_page.version_days(mde.fields(), 7, WHEN) == alert_page.version_days(
        graph.fields(), 7, WHEN)


def test_the_portal_page_of_a_stored_graph_alert_escapes_hostile_text():
    from tests.unit.test_portal_alert_page import TENANT as DESK_TENANT
    from tests.unit.test_portal_alert_page import Desk
    desk = Desk()
    doc = hostile(graph_alert(id="da-graph-1"), GRAPH)
    desk.alerts.store(alert_rows(DESK_TENANT, doc, WHEN, schema=GRAPH))
    page = desk.get(alert_id="da-graph-1")
    assert page.status == 200, page.body
    body = page.body
    assert "<script>" not in body and "&lt;script&gt;" in body
    assert 'id="a-product">Microsoft Defender for Endpoint<' in body
    for text in ("T1564.001", "Low", "wscript.exe",
                 "C:\\Users\\Public\\hidden.vbs", "203.0.113.7", "Suspicious"):
        assert text in unescape(body), text


def test_a_rule_on_product_matches_only_that_product():
    office_only = parse_rule({"name": "MDO", "recipients": ["soc@mssp.example"],
                              "products": ["microsoftDefenderForOffice365"]}, TENANT)
    endpoint = parse_rule({"name": "MDE", "recipients": ["soc@mssp.example"],
                           "products": ["microsoftDefenderForEndpoint"]}, TENANT)
    assert matches(office_only, _event(office_alert(), GRAPH))
    for other in (_event(mde_alert(), MDE), _event(graph_alert(), GRAPH),
                  _event(identity_alert(), GRAPH)):
        assert not matches(office_only, other)
    assert matches(endpoint, _event(mde_alert(), MDE))
    assert matches(endpoint, _event(graph_alert(), GRAPH))
    assert not matches(endpoint, _event(office_alert(), GRAPH))
    # an event queued before the product was kept is an endpoint alert's
    old = AlertEvent(TENANT, "N", "da1", "v", "new", {}, {"id": "da1", "severity": "Low"})
    assert matches(endpoint, old) and not matches(office_only, old)
    assert matches(RULE, _event(office_alert(), GRAPH))  # no products: every product


def test_a_rule_on_severity_reads_graphs_alert_in_the_canonical_spelling():
    high = parse_rule({"name": "H", "recipients": ["soc@mssp.example"],
                       "min_severity": "High"}, TENANT)
    assert matches(high, _event(identity_alert(), GRAPH))
    assert not matches(high, _event(office_alert(), GRAPH))


def test_the_rule_api_validates_products_and_the_form_keeps_those_it_does_not_show():
    with pytest.raises(ValidationError):
        parse_rule({"name": "x", "recipients": ["a@b.example"], "products": "one"}, TENANT)
    rule = parse_rule({"name": "x", "recipients": ["a@b.example"],
                       "products": ["microsoftSentinel", "someFutureProduct",
                                    "microsoftSentinel"]}, TENANT)
    assert rule.products == ["microsoftSentinel", "someFutureProduct"]
    body = form_body({"name": "x", "recipients": "a@b.example", "on_new": "yes",
                      "products_shown": "yes",
                      "product_microsoftDefenderForOffice365": "yes"}, rule)
    assert body["products"] == ["microsoftDefenderForOffice365", "someFutureProduct"]
    unchanged = form_body({"name": "x", "recipients": "a@b.example", "on_new": "yes"}, rule)
    assert unchanged["products"] == rule.products  # a form from before the boxes
