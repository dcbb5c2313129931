"""The graph fetch against the simulator's Microsoft Graph (alerts_v2 with real tokens,
opaque expiring nextLinks, throttling, roles) on Azurite, through the wiring a worker
uses: alerts of four products sharing one lastUpdateDateTime across many pages stored
once; a nextLink that expires between two runs; throttling; a missing Graph role; and a
tenant moved from mde (its endpoint alerts are the same alerts in Graph) with 0 lost, 0
repeated, probed first by the MSSP's move."""

from __future__ import annotations

import pytest

from shared.microsoft.graph_security import GraphSecurityClient
from shared.model import Tenant, TenantStatus
from shared.services import ingestor_for
from shared.tenants.source_move import NeedsConsent, SourceMove
from tests.integration.ingest_fixtures import Pipeline
from tests.integration.ingest_fixtures import pipeline as pipeline  # the fixture

PRODUCTS = ["microsoftDefenderForEndpoint", "microsoftDefenderForOffice365",
            "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps"]
GRAPH = "https://graph.microsoft.com"


@pytest.fixture
def graphed(pipeline: Pipeline) -> Pipeline:
    """The pipeline with Graph at the simulator, pages of 5; alerts only (incidents have
    their own tests: test_incidents_simulator.py), so a run's Graph calls are its pages."""
    return pipeline.with_settings(GRAPH_BASE_URL=pipeline.simulator.base_url,
                                  FETCH_PAGE_SIZE="5", GRAPH_INCIDENTS="false")


def _graph_tenant(p: Pipeline, name: str) -> Tenant:
    created = p.sim.add_tenant(name, consent=[p.simulator.config.client_id])
    return p.tenants.add(Tenant(created["id"], name, source="graph"))


def _once(events: list[dict]) -> list[str]:
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event twice"
    return sorted(e["alert_id"] for e in events)


def test_four_products_on_one_time_across_many_pages_are_stored_once(graphed):
    tenant = _graph_tenant(graphed, "Graph Sim Four Co")
    made = graphed.sim.generate_graph(tenant.tenant_id, 23, PRODUCTS, alerts_per_incident=2,
                                      age_seconds=60)
    graphed.sim.touch_alerts(tenant.tenant_id)  # one lastUpdateDateTime for all
    served = {a["id"]: a for a in graphed.sim.graph_alerts(tenant.tenant_id)}
    run = graphed.fetch(tenant)
    assert (run.outcome, run.new, run.pages) == ("success", 23, 5)
    events = graphed.events(tenant.tenant_id)
    keys = {a["providerAlertId"] if a["serviceSource"] == PRODUCTS[0] else a["id"]
            for a in served.values()}
    assert _once(events) == sorted(keys) and len(made["ids"]) == 23
    assert {e["alert"]["serviceSource"] for e in events} == set(PRODUCTS)
    assert {e["alert"]["schema"] for e in events} == {"graph"}
    again = graphed.fetch(tenant)
    assert (again.new, again.changed) == (0, 0)
    assert graphed.events(tenant.tenant_id) == []


def test_a_nextlink_expired_between_two_runs_restarts_the_chain(graphed, sim):
    paged = graphed.with_settings(GRAPH_BASE_URL=graphed.simulator.base_url,
                                  FETCH_PAGE_SIZE="5", FETCH_MAX_PAGES_PER_RUN="1")
    tenant = _graph_tenant(paged, "Graph Sim Expiry Co")
    sim.generate_graph(tenant.tenant_id, 12, PRODUCTS, age_seconds=60)
    first = paged.fetch(tenant)
    assert (first.outcome, first.new) == ("partial", 5)
    sim.advance_clock(601)  # the link's lifetime (600 s) is over
    runs = [paged.fetch(tenant, continuation=True)]
    while runs[-1].outcome == "partial":
        runs.append(paged.fetch(tenant, continuation=True))
    assert runs[-1].outcome == "success"
    assert sum(r.new for r in runs) == 7
    assert len(_once(paged.events(tenant.tenant_id))) == 12


def test_throttling_and_a_missing_role(graphed, sim):
    tenant = _graph_tenant(graphed, "Graph Sim Throttled Co")
    sim.generate_graph(tenant.tenant_id, 3, PRODUCTS, age_seconds=60)
    sim.limits(graph={"per_minute": 1})
    try:
        assert graphed.fetch(tenant).outcome == "success"
        throttled = graphed.fetch(tenant)
        assert throttled.outcome == "throttled"
        assert graphed.tenants.get(tenant.tenant_id).throttled_until is not None
    finally:
        sim.limits(graph={"per_minute": 150})
    mail_only = _graph_tenant(graphed, "Graph Sim Mail Only Co")
    sim.grant(mail_only.tenant_id, graphed.simulator.config.client_id,
              roles={GRAPH: ["Mail.Send"]})
    refused = graphed.fetch(mail_only)
    assert refused.outcome == "consent_revoked"
    after = graphed.tenants.get(mail_only.tenant_id)
    assert (after.status, after.status_reason) == (TenantStatus.CONSENT_REVOKED,
                                                   "graph_consent_missing")


def test_a_tenant_moved_from_mde_loses_and_repeats_no_alert(graphed, sim):
    tenant = graphed.add_tenant("Graph Sim Moving Co", alerts=9)
    assert graphed.fetch(tenant).new == 9
    endpoint = {e["alert_id"] for e in graphed.events(tenant.tenant_id)}
    mover = SourceMove(graphed.tenants, lambda t: graphed.ingestor.tokens,
                       GraphSecurityClient(graphed.simulator.base_url, 10,
                                           str(graphed.simulator.config.ca_path)))
    sim.grant(tenant.tenant_id, graphed.simulator.config.client_id,
              roles={GRAPH: ["Mail.Send"]})
    with pytest.raises(NeedsConsent):  # probed: the Graph role is missing
        mover.to_graph(graphed.tenants.get(tenant.tenant_id))
    sim.grant(tenant.tenant_id, graphed.simulator.config.client_id,
              roles={GRAPH: ["SecurityAlert.Read.All", "SecurityIncident.Read.All"]})
    graphed.ingestor.tokens.forget(tenant.tenant_id)
    assert mover.to_graph(graphed.tenants.get(tenant.tenant_id)).source == "graph"
    changed = sorted(endpoint)[0]
    sim.update_alert(tenant.tenant_id, changed)  # one change since the last mde fetch
    others = sim.generate_graph(tenant.tenant_id, 3, PRODUCTS[1:], age_seconds=0)
    worker = ingestor_for(graphed.settings, graphed.ingestor.tokens, graphed.ingestor.client)
    run = worker.run(graphed.fanned_out(tenant))
    assert run.outcome == "success"
    after = graphed.events(tenant.tenant_id)
    news = sorted(e["alert_id"] for e in after if e["change"] == "new")
    assert news == sorted(others["ids"])  # no endpoint alert is new again
    assert [e["alert_id"] for e in after if e["change"] == "updated"] == [changed]
    rows = graphed.rows(tenant.tenant_id)
    assert set(rows) == endpoint | set(others["ids"])
    assert graphed.row(tenant.tenant_id, changed)["Schema"] == "graph"
    assert worker.run(graphed.fanned_out(tenant)).new == 0
    assert graphed.events(tenant.tenant_id) == []
