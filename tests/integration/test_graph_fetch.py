"""The graph fetch over HTTP and on Azurite: the alerts_v2 client against a stand-in for
Graph (tests/integration/graph_fake.py: paging by nextLink, throttling, refusals, expired
links), a graph tenant's idle fetch at three storage requests, and a tenant moved from
mde (fetched from the simulator) to graph with overlapping endpoint alerts: 0 lost, 0
repeated."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared import timefmt
from shared.microsoft.defender import DefenderError, Throttled
from shared.microsoft.graph_security import (
    GRAPH_SCOPE,
    ExpiredLink,
    GraphConsentMissing,
    GraphSecurityClient,
)
from shared.model import Tenant
from tests.integration import graph_fake
from tests.integration.graph_fake import FakeGraph, token_for
from tests.integration.ingest_fixtures import Pipeline
from tests.integration.ingest_fixtures import pipeline as pipeline  # the fixture
from tests.integration.test_ingest_idle import storage_requests

TENANT = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    yield from graph_fake.running()


def _v2(n: int, updated: str, *, provider: str = "", **fields: Any) -> dict[str, Any]:
    return {"id": f"g{n:05d}", "providerAlertId": provider or f"x{n}",
            "serviceSource": "microsoftDefenderForEndpoint" if provider
            else "microsoftDefenderForIdentity", "title": f"Alert {n}", "status": "new",
            "severity": "medium", "classification": None, "determination": None,
            "assignedTo": None, "createdDateTime": updated, "lastUpdateDateTime": updated,
            "evidence": [{"@odata.type": "#microsoft.graph.security.ipEvidence",
                          "ipAddress": "10.0.0.1"}], **fields}


def _chain(client: GraphSecurityClient, token: str, since: str, top: int
           ) -> tuple[list[dict[str, Any]], int]:
    seen, link, pages = [], "", 0
    while True:
        with client.alerts(token, since=since, top=top, link=link) as page:
            seen += [alert for alert, _ in page.documents]
        pages += 1
        link = page.next_link
        if not link:
            return seen, pages


def _camel(value: Any, unknown: Any = None) -> Any:
    return value[:1].lower() + value[1:] if isinstance(value, str) and value else unknown


def _as_graph(alert: dict[str, Any]) -> dict[str, Any]:
    """An endpoint alert's fields as Graph spells them ("InProgress" -> "inProgress",
    no classification -> "unknown")."""
    return {"createdDateTime": alert["alertCreationTime"],
            "status": _camel(alert.get("status")), "severity": _camel(alert.get("severity")),
            "classification": _camel(alert.get("classification"), "unknown"),
            "determination": _camel(alert.get("determination"), "unknown"),
            "assignedTo": alert.get("assignedTo")}


# the client ---------------------------------------------------------------------------
def test_a_chain_is_followed_by_nextlink_wherever_the_page_puts_it(graph):
    stamp = "2026-01-01T00:00:00.0000000Z"
    for n in range(25):
        graph.put(TENANT, _v2(n, stamp))
    client = GraphSecurityClient(graph.base, 10)
    alerts, pages = _chain(client, token_for(TENANT), stamp, 4)
    assert pages == 7 and sorted(a["id"] for a in alerts) == [f"g{n:05d}" for n in range(25)]
    first = graph.requests[0]
    assert "%24filter=lastUpdateDateTime+ge+2026-01-01T00%3A00%3A00.0000000Z" in first
    assert "%24top=4" in first and "orderby" not in first


def test_refusals_say_what_to_do(graph):
    client = GraphSecurityClient(graph.base, 10)
    token = token_for(TENANT)
    graph.answer_next(429, {"error": {"code": "TooManyRequests"}}, {"Retry-After": "17"})
    with pytest.raises(Throttled) as throttled, client.alerts(token, top=1):
        pass
    assert throttled.value.retry_after == 17
    graph.answer_next(403, {"error": {"code": "Forbidden", "message": "Missing role"}})
    with pytest.raises(GraphConsentMissing), client.alerts(token, top=1):
        pass
    graph.answer_next(503, {"error": {"code": "ServiceUnavailable"}})
    with pytest.raises(DefenderError) as failed, client.alerts(token, top=1):
        pass
    assert failed.value.transient


def test_an_expired_nextlink_is_recognised_and_a_foreign_one_not_followed(graph):
    for n in range(5):
        graph.put(TENANT, _v2(n, "2026-01-01T00:00:00.0000000Z"))
    client = GraphSecurityClient(graph.base, 10)
    token = token_for(TENANT)
    with client.alerts(token, top=2) as page:
        list(page.documents)
    graph.expire_all()
    with pytest.raises(ExpiredLink), client.alerts(token, link=page.next_link):
        pass
    graph.answer_next(400, {"error": {"code": "BadRequest",
                                      "message": "Invalid $skiptoken: it has expired"}})
    with pytest.raises(ExpiredLink), client.alerts(token, link=page.next_link):
        pass
    with pytest.raises(DefenderError, match="another host"), client.alerts(
            token, link="https://elsewhere.example/v1.0/security/alerts_v2?$skiptoken=1"):
        pass
    assert len(graph.requests) == 3  # the foreign link was never asked


# the worker on Azurite ----------------------------------------------------------------
def _graph_pipeline(pipeline: Pipeline, graph: FakeGraph, **settings: str) -> Pipeline:
    # the fake serves alerts_v2 only: incidents are fetched (and measured) against the
    # simulator (test_incidents_simulator.py)
    moved = pipeline.with_settings(GRAPH_INCIDENTS="false", **settings)
    moved.ingestor.graph = GraphSecurityClient(graph.base, 10)
    return moved


def test_an_idle_graph_fetch_is_one_call_and_three_storage_requests(pipeline, graph):
    """As for mde: when the overlap's alerts fit one page (here 100), one call."""
    paged = _graph_pipeline(pipeline, graph, FETCH_PAGE_SIZE="7")
    created = pipeline.sim.add_tenant("Graph Idle Co",
                                      consent=[pipeline.simulator.config.client_id])
    tenant = pipeline.tenants.add(Tenant(created["id"], "Graph Idle Co", source="graph"))
    now = timefmt.from_datetime(datetime.now(UTC))
    for n in range(20):  # one time for all, across three pages
        graph.put(tenant.tenant_id, _v2(n, timefmt.shift(now, -120)))
    run = paged.fetch(tenant)
    assert (run.outcome, run.new, run.pages) == ("success", 20, 3)
    events = pipeline.events(tenant.tenant_id)
    assert len(events) == len({e["event_id"] for e in events}) == 20
    assert {e["alert"]["schema"] for e in events} == {"graph"}
    idle_pipeline = _graph_pipeline(pipeline, graph)
    idle_pipeline.fetch(tenant)  # this worker's first idle run is kept in the history
    for _ in range(2):
        calls = len(graph.requests)
        request = idle_pipeline.fanned_out(tenant)
        with storage_requests() as seen:
            idle = idle_pipeline.ingestor.run(request)
        assert (idle.outcome, idle.new, idle.changed, idle.unchanged) == (
            "success", 0, 0, 20)
        assert len(graph.requests) - calls == 1
        assert len(seen) <= 3, "\n".join(seen)
    assert pipeline.events(tenant.tenant_id) == []


def test_a_tenant_moved_from_mde_to_graph_loses_and_repeats_no_alert(pipeline, graph):
    pipeline = _graph_pipeline(pipeline, graph)
    tenant = pipeline.add_tenant("Moving Co", alerts=12)
    assert pipeline.fetch(tenant).new == 12
    first = pipeline.events(tenant.tenant_id)
    mde_alerts = pipeline.sim.alerts(tenant.tenant_id)
    for n, alert in enumerate(mde_alerts):  # the same endpoint alerts, as Graph has them
        graph.put(tenant.tenant_id, _v2(n, timefmt.normalize(alert["lastUpdateTime"]),
                                        provider=alert["id"], **_as_graph(alert)))
    n, changed = next((n, a) for n, a in enumerate(mde_alerts) if a["status"] != "Resolved")
    later = timefmt.shift(timefmt.normalize(changed["lastUpdateTime"]), 30)
    graph.put(tenant.tenant_id, _v2(n, later, provider=changed["id"],
                                    **{**_as_graph(changed), "status": "resolved"}))
    graph.put(tenant.tenant_id, _v2(500, later))  # Defender for Identity's
    pipeline.tenants.move_source(tenant.tenant_id, "graph")
    run = pipeline.fetch(tenant)
    assert (run.outcome, run.new, run.changed) == ("success", 1, 1)
    after = pipeline.events(tenant.tenant_id)
    assert [(e["alert_id"], e["change"]) for e in after if e["change"] == "new"] == [
        ("g00500", "new")]
    assert [(e["alert_id"], e["changed"]["status"]) for e in after
            if e["change"] == "updated"] == [(changed["id"], [changed["status"], "Resolved"])]
    rows = pipeline.rows(tenant.tenant_id)
    assert len(rows) == 13 and {e["alert_id"] for e in first} <= set(rows)
    assert pipeline.row(tenant.tenant_id, changed["id"])["Schema"] == "graph"
    assert pipeline.ingestor.tokens is not None and GRAPH_SCOPE
    again = pipeline.fetch(tenant)
    assert (again.new, again.changed) == (0, 0)
    assert pipeline.events(tenant.tenant_id) == []
