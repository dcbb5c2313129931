"""The portal's reads against Azurite: alerts across tenants in time order, page by page."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.model import Tenant
from shared.portal import queries
from shared.portal.queries import AlertFilter, search_alerts, tenant_alert_counts
from shared.storage import tables
from shared.storage.alert_index import AlertIndex, entry_of, mains
from shared.storage.alert_rows import alert_rows
from shared.storage.alerts import AlertRepository

NOW = datetime.now(UTC)


def _alert(n: int, updated: datetime, **fields: object) -> dict:
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return {"id": f"da{n:06d}_{uuid.uuid4().hex[:6]}", "title": f"Alert {n}",
            "severity": ("High", "Medium", "Low")[n % 3], "status": "New",
            "category": "Execution", "rbacGroupName": "Servers",
            "alertCreationTime": stamp, "lastUpdateTime": stamp, **fields}


@pytest.fixture
def alerts(storage_env):
    return AlertRepository(tables.table(storage_env, tables.ALERTS))


@pytest.fixture
def index(storage_env):
    """An index of this test alone (the shared one holds other tests' alerts)."""
    return AlertIndex(tables.table(storage_env, f"AlertIndex{uuid.uuid4().hex[:12]}"))


@pytest.fixture
def _store(alerts, index):
    def store(_: AlertRepository, tenant_id: str, items: list[dict]) -> None:
        for item in items:  # as ingest then the relay write them
            rows = alert_rows(tenant_id, item)
            alerts.store(rows)
            index.record([entry_of(m) for m in mains(rows)], [])
    return store


def test_pages_across_tenants_are_in_time_order_with_nothing_lost_or_repeated(
        alerts, index, _store):
    a, b = Tenant(str(uuid.uuid4()), "A"), Tenant(str(uuid.uuid4()), "B")
    tie = NOW - timedelta(hours=1)
    _store(alerts, a.tenant_id, [_alert(i, NOW - timedelta(minutes=i)) for i in range(40)]
           + [_alert(100 + i, tie) for i in range(6)])
    _store(alerts, b.tenant_id, [_alert(200 + i, NOW - timedelta(minutes=i, seconds=30))
                                 for i in range(30)] + [_alert(300 + i, tie) for i in range(5)])
    # one alert too big for one row: its overflow row must not show up as an alert
    _store(alerts, b.tenant_id, [_alert(999, NOW - timedelta(days=2), evidence=[
        {"blob": os.urandom(700_000).hex()}])])
    seen, before, pages = [], "", 0
    while True:
        flt = AlertFilter.parse({"before": before} if before else {}, {a.tenant_id})
        page = search_alerts(index, [a, b], flt, NOW, page_size=25)
        seen.extend(page.rows)
        pages += 1
        if not page.next_before:
            break
        before = page.next_before
    assert pages == 4 and len(seen) == 82
    assert len({(r.tenant_id, r.alert_id) for r in seen}) == 82
    assert [r.order for r in seen] == sorted(r.order for r in seen)
    assert seen[-1].title == "Alert 999"


def test_filters_narrow_in_the_index_and_a_long_scan_stops_with_a_way_on(
        alerts, index, _store, monkeypatch):
    a, b = Tenant(str(uuid.uuid4()), "A"), Tenant(str(uuid.uuid4()), "B")
    _store(alerts, a.tenant_id, [_alert(i, NOW - timedelta(minutes=i)) for i in range(9)]
           + [_alert(50, NOW - timedelta(days=20), severity="High")])
    _store(alerts, b.tenant_id, [_alert(60 + i, NOW, status="Resolved", severity="Low")
                                 for i in range(3)])
    ids = {a.tenant_id, b.tenant_id}

    def titles(**params: str) -> list[str]:
        page = search_alerts(index, [a, b], AlertFilter.parse(params, ids), NOW)
        return sorted(r.title for r in page.rows)

    assert titles(severity="High") == ["Alert 0", "Alert 3", "Alert 6"]
    assert titles(severity="High", range="30d") == ["Alert 0", "Alert 3", "Alert 50",
                                                     "Alert 6"]
    assert titles(status="Resolved") == ["Alert 60", "Alert 61", "Alert 62"]
    assert len(titles(status="open")) == 9
    assert titles(tenant=b.tenant_id, category="Nope") == []
    # at most READ_PAGES x page size entries a request: a narrow filter over many rows
    # stops with a link on from where it stopped, and the pages still find every match
    monkeypatch.setattr(queries, "READ_PAGES", 1)
    flt, found = AlertFilter.parse({"tenant": a.tenant_id, "severity": "High",
                                    "range": "30d"}, ids), []
    page = search_alerts(index, [a, b], AlertFilter.parse(
        {"severity": "Low"}, ids), NOW, page_size=2)
    assert page.read == 2 and page.partial and page.next_before
    while True:
        page = search_alerts(index, [a, b], flt, NOW, page_size=2)
        assert page.read <= 2
        found.extend(r.title for r in page.rows)
        if not page.next_before:
            break
        flt = AlertFilter.parse({**flt.params(), "before": page.next_before}, ids)
    assert sorted(found) == ["Alert 0", "Alert 3", "Alert 50", "Alert 6"]


def test_open_alerts_by_severity_and_alerts_per_day(alerts, _store):
    tenant = str(uuid.uuid4())
    _store(alerts, tenant, [_alert(0, NOW, severity="High"),
                            _alert(1, NOW, severity="High", status="InProgress"),
                            _alert(2, NOW, severity="Low", status="Resolved"),
                            _alert(3, NOW - timedelta(days=1), severity="Medium"),
                            _alert(4, NOW - timedelta(days=40), severity="Low")])
    counts = tenant_alert_counts(alerts, tenant, NOW)
    assert counts.open_by_severity == {"High": 2, "Medium": 1, "Low": 1, "Informational": 0}
    today, yesterday = NOW.strftime("%Y-%m-%d"), (NOW - timedelta(days=1)).strftime("%Y-%m-%d")
    assert counts.per_day == {(today, "High"): 2, (today, "Low"): 1, (yesterday, "Medium"): 1}
