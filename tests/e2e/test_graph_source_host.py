"""A tenant moved from mde to graph through the admin API of the local host (the real
function_app.py, Graph at the simulator): the move is probed, the timer's fetches go on
from Graph, and every alert of four products is stored once, the endpoint alerts fetched
before the move among them, none twice."""

from __future__ import annotations

import pytest

from shared.model import Tenant
from shared.storage import tables
from tests.integration.devhost_fixtures import wait_for

PRODUCTS = ["microsoftDefenderForEndpoint", "microsoftDefenderForOffice365",
            "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps"]


@pytest.fixture
def extra_settings(simulator) -> dict[str, str]:
    return {"GRAPH_BASE_URL": simulator.base_url}


def _rows(storage, tenant_id: str) -> dict[str, str]:
    client = tables.table(storage, tables.ALERTS)
    return {e["AlertId"]: e.get("Schema") or "mde" for e in client.query_entities(
        "PartitionKey eq @pk", parameters={"pk": tenant_id},
        select=["RowKey", "AlertId", "Schema"]) if "%~" not in e["RowKey"]}


def test_a_tenant_moved_to_graph_through_the_admin_api(api, simulator, sim, storage_env):
    base, session, repo = api
    created = sim.add_tenant("Graph Host Co", consent=[simulator.config.client_id])
    tenant_id = created["id"]
    endpoint = sim.generate(tenant_id, 6, age_seconds=300)["ids"]
    repo.add(Tenant(tenant_id, "Graph Host Co"))
    wait_for(lambda: len(_rows(storage_env, tenant_id)) == 6, timeout=60)

    moved = session.post(f"{base}/tenants/{tenant_id}/move-to-graph", timeout=30)
    assert moved.status_code == 200, moved.text
    assert moved.json()["source"] == "graph"
    others = sim.generate_graph(tenant_id, 6, PRODUCTS[1:], age_seconds=0)["ids"]
    rows = wait_for(lambda: (lambda r: r if len(r) == 12 else None)(
        _rows(storage_env, tenant_id)), timeout=60)
    assert set(rows) == set(endpoint) | set(others)
    assert {rows[i] for i in others} == {"graph"}
    again = session.post(f"{base}/tenants/{tenant_id}/move-to-graph", timeout=30)
    assert again.status_code == 200 and again.json()["source"] == "graph"
    unknown = session.post(f"{base}/tenants/{tenant_id}/move-to-nowhere", timeout=10)
    assert unknown.status_code == 400
