"""Cluster events in the SIEM feed, on Azurite and on the memory fake: each version one
entry whatever the redeliveries, its own type beside alert events, filtered by its highest
severity and its last sighting, and never in a read filtered to tenants (a cluster names
customers: a tenant-scoped output or pull never sees one)."""

from __future__ import annotations

import uuid

import pytest

from shared.messages import AlertEvent
from shared.siem.feed import Filters
from shared.siem.pull import item
from tests.cluster_events import HOSTILE_URL, TENANTS, cluster_event
from tests.contract.feed_helpers import clocked_feed, read_settled


@pytest.fixture
def feed(backend):
    return clocked_feed(backend, "C")


def _alert(tenant: str, severity: str = "High") -> AlertEvent:
    return AlertEvent(tenant, "Contoso", "da1", "2026-11-30T09:59:00.0000000Z", "new", {},
                      {"id": "da1", "title": "A", "severity": severity, "status": "New"})


def test_each_cluster_version_enters_once_as_its_own_type(feed):
    new, grew = cluster_event(), cluster_event(version=2, tenants=TENANTS)
    assert feed.append_all([new]) == [True]
    assert feed.append_all([new]) == [False]  # redelivered
    assert feed.append(new) is False
    assert feed.append_all([grew]) == [True]
    events = read_settled(feed)
    assert [(e["type"], e["version"], e["change"]) for e in events] == [
        ("cluster", 1, "new"), ("cluster", 2, "grew")]
    first = events[0]
    assert first["indicator"] == HOSTILE_URL and first["tenants"] == TENANTS[:2]
    assert first["event_id"] == new.event_id and "alert" not in first
    reply = item(first)
    assert reply.type == "cluster" and reply.tenant_id is None and reply.alert == {}
    assert reply.cluster is not None and reply.cluster["reach"] == 2
    assert reply.cluster["indicator"] == HOSTILE_URL and reply.cluster["key"] == new.key
    assert reply.change == "new" and item(events[1]).cluster["joined"] == TENANTS[2:]


def test_a_read_filtered_to_tenants_never_holds_a_cluster(feed):
    tenant = TENANTS[0]["id"]
    assert feed.append_all([_alert(tenant), cluster_event()]) == [True, True]
    assert {e.get("type", "alert") for e in read_settled(feed)} == {"alert", "cluster"}
    for tenants in ((tenant,), tuple(t["id"] for t in TENANTS), (str(uuid.uuid4()),)):
        assert all(e.get("type", "alert") == "alert"
                   for e in read_settled(feed, Filters(tenants=tenants)))
    assert len(read_settled(feed, Filters(tenants=(tenant,)))) == 1


def test_severity_filters_take_the_highest_and_time_filters_the_last_sighting(feed):
    feed.append_all([cluster_event(severities={"high": 1, "low": 4})])
    feed.append_all([cluster_event("ip", "203.0.113.7", severities={"low": 2},
                                   last_seen="2026-11-29T10:00:00Z")])
    feed.append_all([cluster_event("domain", "evil.example", severities={"UnSpecified": 1})])
    assert [e["indicator"] for e in read_settled(feed, Filters(severities=("High",)))] == [
        HOSTILE_URL]
    assert [e["indicator"] for e in read_settled(feed, Filters(severities=("Low",)))] == [
        "203.0.113.7"]
    assert [e["indicator"] for e in read_settled(feed, Filters(
        until="2026-11-29T23:00:00.0000000Z"))] == ["203.0.113.7"]
    assert read_settled(feed, Filters(statuses=("New",))) == []  # a cluster has no status
