"""A Graph alert is parsed by the alert view once per process step, not once per consumer:
the fetch parses it once for its index entry, row and event (it was three times, four for
an update, more when the event had to be cut to fit the queue), and a syslog line once for
its severity and its CEF or ECS body (it was twice). Outputs are unchanged (the consumer
tests, tests/unit/test_alert_view_consumers.py, compare them with their mde twins)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from shared.alerts import view as alert_view
from shared.alerts.view import GRAPH, AlertView
from shared.notify.rules import parse_rule
from shared.notify.service import Notifier
from shared.siem.outputs import parse_outputs
from shared.siem.pull import item
from shared.siem.senders import syslog_frame
from tests.alert_docs import graph_alert
from tests.helpers import settings as make_settings
from tests.unit.test_alert_view_consumers import _feed_event as feed_event
from tests.unit.test_graph_fetch import GraphWorld
from tests.unit.test_graph_fetch import graph_alert as numbered
from tests.unit.test_notifier import FakeTransport, memory_stores


@pytest.fixture
def parses(monkeypatch) -> Counter[str]:
    """AlertView.of calls, by the id of the document parsed."""
    counted: Counter[str] = Counter()
    real = AlertView.of.__func__  # type: ignore[attr-defined]

    def of(cls: type[AlertView], document: Any, schema: str) -> AlertView:
        counted[str(document.get("id"))] += 1
        return real(cls, document, schema)

    monkeypatch.setattr(alert_view.AlertView, "of", classmethod(of))
    return counted


def test_the_fetch_parses_each_new_or_updated_alert_once(parses):
    world = GraphWorld(FETCH_PAGE_SIZE="4")
    world.add_graph(6)
    assert world.fetch().new == 6
    assert set(parses.values()) == {1} and len(parses) == 6
    parses.clear()
    world.graph.put(world.tenant.tenant_id, numbered(
        0, world.now + timedelta(minutes=5), status="inProgress"))
    run = world.fetch()  # the update, and the other five re-read in the overlap
    assert (run.changed, run.unchanged) == (1, 5)
    assert parses["ga000000-o"] == 1
    assert set(parses.values()) == {1}
    world.relay_requested()
    assert len(world.events()) == 7


def test_an_event_cut_to_fit_the_queue_parses_its_alert_once(parses):
    world = GraphWorld()
    long = {name: name[0] * 5_000 for name in (
        "title", "description", "assignedTo", "category", "detectorId",
        "threatDisplayName", "threatFamilyName")}
    files = [{"@odata.type": "#microsoft.graph.security.fileEvidence",
              "fileDetails": {"fileName": f"{n}" * 900, "filePath": "p" * 900,
                              "sha256": "a" * 900}} for n in range(30)]
    world.graph.put(world.tenant.tenant_id, numbered(1, world.now, evidence=files, **long))
    assert world.fetch().new == 1
    assert parses["ga000001-o"] == 1
    world.relay_requested()
    [event] = world.events()
    assert len(event.alert["description"]) <= 501  # cut to fit (first at 2,000)


@pytest.mark.parametrize("format_", ["cef", "ecs"])
def test_a_syslog_line_parses_its_alert_once(parses, format_):
    output = parse_outputs(json.dumps([{"name": "s", "type": "syslog", "host": "h",
                                        "format": format_}]), {})[0]
    event = feed_event(graph_alert(), GRAPH)
    parses.clear()
    frame = syslog_frame(output, event, "collector").decode()
    assert sum(parses.values()) == 1
    assert frame.startswith("<") and ("CEF:0|" in frame) == (format_ == "cef")


def test_the_whole_path_parses_a_graph_alert_once_per_step(parses):
    """Fetch 1, relay 0, notify 0 (the event's summary is in Defender's names), a syslog
    line 1, a pull item 1 (from the feed entry, the stored alert as received)."""
    world = GraphWorld(FETCH_PAGE_SIZE="4")
    world.add_graph(5)
    world.fetch()
    fetched = dict(parses)
    parses.clear()
    world.relay_requested()
    events = world.events()
    transport = FakeTransport()
    notifier = Notifier(make_settings(MAIL_FROM="alerts@mssp.example"), transport,
                        memory_stores())
    rule = parse_rule({"name": "all", "recipients": ["soc@mssp.example"]},
                      world.tenant.tenant_id)
    notifier.rules.save(replace(rule, recipients=[  # added before the alerts were raised
        {**r, "added_at": "2000-01-01T00:00:00+00:00"} for r in rule.recipients]))
    notifier.handle_all(events)
    assert (len(events), len(transport.sent)) == (5, 5)
    relayed_and_notified = sum(parses.values())
    output = parse_outputs(json.dumps([{"name": "s", "type": "syslog", "host": "h"}]), {})[0]
    feed = [feed_event(world.graph.store[world.tenant.tenant_id][e.alert_id], GRAPH)
            for e in events]
    parses.clear()
    for event in feed:
        syslog_frame(output, event, "collector")
        item(event)
    assert set(fetched.values()) == {1} and len(fetched) == 5
    assert relayed_and_notified == 0
    assert set(parses.values()) == {2} and len(parses) == 5  # one line, one pull item
