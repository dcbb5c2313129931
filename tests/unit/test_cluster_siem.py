"""Cluster events in the SIEM formats and push delivery, on the in-memory feed: CEF (its
own signature, severity from the highest severity, the indicator in labelled custom
strings, `cnt` the reach, hostile text escaped), ECS (a threat indicator per ECS's
field set), HEC and webhook documents through the same code, and never to an output
scoped to tenants."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.siem.cef import labelled, parse_cef
from shared.siem.cluster_formats import cluster_ecs
from shared.siem.incident_formats import cef_of, ecs_of
from shared.siem.outputs import Output
from shared.siem.senders import HecSender, WebhookSender, document, syslog_frame
from tests.cluster_events import HOSTILE_URL, TENANTS, cluster_event
from tests.unit.test_siem_delivery import TENANT, Rig


def _fed(event: Any) -> dict[str, Any]:
    """The event as the feed gives it back to readers and senders."""
    return {**event.dump(), "feed_time": "2026-11-30T10:00:01Z"}


def test_cef_has_its_own_signature_severity_indicator_and_reach_escaped():
    event = _fed(cluster_event(version=2, tenants=TENANTS))
    line = cef_of(event)
    assert "\n" not in line and "\r" not in line
    header, ext = parse_cef(line)
    assert header[:4] == ["0", "mssp-hub", "Cross-tenant correlation", "1.0"]
    assert header[4] == "cluster" and header[6] == "8"  # High
    assert header[5] == f"URL seen at 3 customers: {HOSTILE_URL}"
    assert ext["cnt"] == "3" and ext["act"] == "grew" and ext["request"] == HOSTILE_URL
    labels = labelled(ext)
    assert labels["IndicatorType"] == "url" and labels["Indicator"] == HOSTILE_URL
    assert labels["TenantIds"] == ",".join(t["id"] for t in TENANTS)
    assert labels["JoinedTenantIds"] == TENANTS[2]["id"]
    assert labels["DedupeKey"] == event["event_id"]
    assert labels["TenantNames"].split("; ")[1] == TENANTS[1]["name"]  # CRLF round-trips
    assert labels["AlertCount"] == "6" and labels["ClusterVersion"] == "2"
    sha = parse_cef(cef_of(_fed(cluster_event("sha256", "ab" * 32, severities={"low": 1}))))
    assert sha[0][6] == "3" and sha[1]["fileHash"] == "ab" * 32


@pytest.mark.parametrize(("kind", "value", "expected"), [
    ("sha256", "ab" * 32, {"type": "file", "file": {"hash": {"sha256": "ab" * 32}}}),
    ("sha1", "cd" * 20, {"type": "file", "file": {"hash": {"sha1": "cd" * 20}}}),
    ("ip", "203.0.113.7", {"type": "ipv4-addr", "ip": "203.0.113.7"}),
    ("ip", "2001:db8::7", {"type": "ipv6-addr", "ip": "2001:db8::7"}),
    ("domain", "evil.example", {"type": "domain-name", "url": {"domain": "evil.example"}}),
    ("url", HOSTILE_URL, {"type": "url", "url": {"full": HOSTILE_URL,
                                                 "original": HOSTILE_URL}}),
    ("file_name", "mimikatz.exe", {"type": "file", "file": {"name": "mimikatz.exe"}}),
])
def test_ecs_is_a_threat_indicator_of_the_kind(kind, value, expected):
    doc = cluster_ecs(_fed(cluster_event(kind, value)))
    indicator = doc["threat"]["indicator"]
    assert {k: indicator[k] for k in expected} == expected
    assert indicator["sightings"] == 4 and indicator["first_seen"].startswith("2026-11-29")
    assert doc["event"]["kind"] == "enrichment" and doc["event"]["type"] == ["indicator"]
    assert doc["event"]["category"] == ["threat"] and doc["event"]["severity"] == 99
    assert doc["event"]["dataset"] == "mssp_hub.cluster"
    cluster = doc["mssp_hub"]["cluster"]
    assert cluster["reach"] == 2 and cluster["tenants"] == TENANTS[:2]
    assert ecs_of(_fed(cluster_event(kind, value))) == doc


def test_hec_webhook_and_syslog_take_it_through_the_same_format_code(monkeypatch):
    event = _fed(cluster_event())
    posted: list[bytes] = []
    monkeypatch.setattr("shared.siem.senders._HttpSender._post",
                        lambda self, body, headers: posted.append(body) or _Ok())
    hec = Output("hec", "splunk_hec", "json", url="https://127.0.0.1/", secret="t")
    HecSender(hec).send([event])
    sent = json.loads(posted[0])
    assert sent["host"] == "mssp-hub" and "tenant_id" not in sent["fields"]
    assert sent["fields"]["dedupe_key"] == event["event_id"]
    assert sent["event"] == document(hec, event)
    assert sent["event"]["type"] == "cluster" and sent["event"]["indicator"] == HOSTILE_URL
    assert sent["time"] == datetime(2026, 11, 30, 9, 30, tzinfo=UTC).timestamp()  # last seen
    hook = Output("hook", "webhook", "ecs", url="https://127.0.0.1/", secret="s" * 16)
    WebhookSender(hook).send([event])
    (doc,) = json.loads(posted[1])["events"]
    assert doc == cluster_ecs(event)
    frame = syslog_frame(Output("s", "syslog", "cef", host="127.0.0.1", port=514), event, "h")
    assert frame.startswith(b"<130>1 ") and b"|cluster|" in frame  # local0.crit: High


class _Ok:
    def json(self) -> dict[str, int]:
        return {"code": 0}


def test_an_output_scoped_to_tenants_never_receives_a_cluster():
    r = Rig(scoped={}, everyone={"tenants": frozenset()})
    alerts = r.append(2)
    mine = cluster_event(tenants=[{"id": TENANT, "name": "Mine"}, *TENANTS[:1]])
    assert r.feed.append(mine)
    r.settle()
    r.delivery.deliver("scoped")
    r.delivery.deliver("everyone")
    assert r.senders["scoped"].received == alerts  # its own tenant's cluster too: no
    assert r.senders["everyone"].received == [*alerts, mine.event_id]


def test_the_pull_type_filter_tells_clusters_from_alerts_and_incidents():
    from shared.siem.pull import Selection

    alert = {"type": "alert", "alert": {"serviceSource": "microsoftDefenderForEndpoint"}}
    incident = {"type": "incident", "incident": {}}
    cluster = {"type": "cluster", "indicator": "https://x.example/<script>"}
    events = [alert, incident, cluster]
    assert [e for e in events if Selection(types=("alert",)).selects(e)] == [alert]
    assert [e for e in events if Selection(types=("cluster",)).selects(e)] == [cluster]
    # a product filter takes alerts of that product only: a cluster spans products
    chosen = Selection(products=("microsoftDefenderForEndpoint",))
    assert [e for e in events if chosen.selects(e)] == [alert]
