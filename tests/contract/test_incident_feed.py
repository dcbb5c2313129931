"""Incident events in the SIEM feed, on Azurite and on the memory fake: each version one
entry whatever the redeliveries, its own type beside alert events, filtered by tenant and
severity like them, and out of the pull API, CEF and ECS as an incident (hostile text
escaped)."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from shared.messages import AlertEvent, IncidentEvent
from shared.siem.cef import parse_cef
from shared.siem.feed import Filters
from shared.siem.incident_formats import cef_of, ecs_of, incident_document
from shared.siem.pull import item
from tests.contract.feed_helpers import clocked_feed, read_settled

HOSTILE = "x|y=z\\w\r\nCEF:0|evil <script>"


@pytest.fixture
def feed(backend):
    return clocked_feed(backend, "I")


def _incident(tenant: str, version: str, severity: str = "high") -> IncidentEvent:
    return IncidentEvent(tenant, "Contoso", "1042", version, "new", {},
                         {"name": HOSTILE, "severity": severity, "status": "active",
                          "alertIds": ["da1", "ga2"], "alertCount": 2, "tags": ["vip"],
                          "createdDateTime": "2026-11-30T09:00:00Z",
                          "lastUpdateDateTime": version,
                          "webUrl": "https://security.microsoft.com/incidents/1042"})


def test_incident_versions_enter_once_as_their_own_type(feed):
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    first = _incident(tenant, "2026-11-30T09:59:00.0000000Z")
    alert = AlertEvent(tenant, "Contoso", "da1", "2026-11-30T09:59:00.0000000Z", "new", {},
                       {"id": "da1", "title": "A", "severity": "High", "status": "New"})
    assert feed.append_all([first]) == [True]
    assert feed.append_all([first]) == [False]  # redelivered
    assert feed.append_all([alert, _incident(other, "2026-11-30T09:59:30.0000000Z",
                                             "low")]) == [True, True]
    events = read_settled(feed)
    incidents = [e for e in events if e.get("type") == "incident"]
    assert len(incidents) == 2 and len(events) == 3
    mine = next(e for e in incidents if e["tenant"] == tenant)
    assert mine["incident"]["name"] == HOSTILE and "alert" not in mine
    high = read_settled(feed, Filters(tenants=(tenant,), severities=("High",)))
    assert {e.get("type", "alert") for e in high} == {"incident", "alert"}
    reply = item(mine)
    assert reply.type == "incident" and reply.incident_id == "1042"
    assert reply.incident and reply.incident["alertIds"] == ["da1", "ga2"]
    assert item(next(e for e in events if e.get("type") == "alert")).type == "alert"


def test_incident_cef_and_ecs(feed):
    tenant = str(uuid.uuid4())
    feed.append_all([_incident(tenant, "2026-11-30T09:59:00.0000000Z")])
    event = read_settled(feed)[0]
    line = cef_of(event)
    assert "\n" not in line and "\r" not in line
    header, ext = parse_cef(line)
    assert header[1:3] == ["Microsoft", "Defender XDR"] and header[4] == "incident"
    assert header[5] == HOSTILE.replace("\r\n", " ")
    assert ext["msg"] == HOSTILE and ext["externalId"] == "1042"
    assert ext["cs1"] == tenant and ext["cs3"] == "da1,ga2"
    doc = ecs_of(event)
    assert doc["event"]["dataset"] == "mssp_hub.incident"
    assert doc["observer"]["product"] == "Defender XDR" and doc["event"]["severity"] == 99
    assert doc["microsoft"]["graph_security_incident"]["name"] == HOSTILE


def test_an_own_incident_change_says_who_made_it(feed):
    """Incident triage's version (`by`: who acted) keeps its author through the feed: the
    pull API's item, ECS labels and the HEC/webhook document; others have no `by`."""
    tenant = str(uuid.uuid4())
    by = {"id": "oid-alice", "name": "Alice <a>", "via": "entra"}
    own = replace(_incident(tenant, "2026-11-30T09:59:00.0000000Z"), by=by)
    feed.append_all([own, _incident(str(uuid.uuid4()), "2026-11-30T09:59:10.0000000Z")])
    mine, theirs = sorted(read_settled(feed), key=lambda e: e["tenant"] != tenant)
    assert item(mine).by == by and item(theirs).by is None
    labels = ecs_of(mine)["labels"]
    assert (labels["changed_by"], labels["changed_by_id"], labels["changed_via"]) == (
        "Alice <a>", "oid-alice", "entra")
    assert "changed_by" not in ecs_of(theirs)["labels"]
    assert incident_document(mine)["by"] == by and "by" not in incident_document(theirs)
