"""The simulator's Graph alert order (devtools/simulator/graph_security.py `_Order`): kept
between pages, so a page costs a bisection, yet always the world as it is: a new or
replaced alert is in the next listing, an updated one is served as it is now, and a
page's keyset gives exactly the older alerts."""

from __future__ import annotations

from devtools.simulator.graph_alerts import CLOUD_APPS, OFFICE
from devtools.simulator.graph_security import GraphSecurity
from devtools.simulator.world import World

ENDPOINT = "microsoftDefenderForEndpoint"


def _world():
    world = World()
    tenant = world.add_tenant("Contoso")
    world.generate_graph(tenant, 12, [ENDPOINT, OFFICE, CLOUD_APPS])
    return world, tenant, GraphSecurity(world)


def test_the_order_is_newest_first_and_a_keyset_gives_the_older_ones():
    _, tenant, security = _world()
    listed = list(security.alerts(tenant))
    seqs = [a.seq for a in listed]
    assert len(listed) == 12 and seqs == sorted(seqs, reverse=True)
    assert len({a.raw["id"] for a in listed}) == 12
    middle = seqs[5]
    assert [a.seq for a in security.alerts(tenant, middle)] == seqs[6:]
    assert list(security.alerts(tenant, min(seqs))) == []


def test_the_order_is_kept_until_an_alert_is_added_or_replaced():
    world, tenant, security = _world()
    list(security.alerts(tenant))
    kept = security._orders[tenant.id]
    list(security.alerts(tenant, 10**9))
    assert security._orders[tenant.id] is kept  # a second page: no new sort
    world.generate_graph(tenant, 1, [OFFICE])
    listed = list(security.alerts(tenant))
    assert security._orders[tenant.id] is not kept and len(listed) == 13
    assert listed[0].seq == max(a.seq for a in listed)  # the new one first
    endpoint = next(a for a in tenant.alerts.values())
    world.put_alert(tenant, {**endpoint.raw, "title": "replaced"})
    assert "replaced" in [a.raw["title"] for a in security.alerts(tenant)]


def test_an_update_is_served_as_it_is_now_in_its_place():
    world, tenant, security = _world()
    before = [a.raw["id"] for a in security.alerts(tenant)]
    endpoint_id = next(iter(tenant.alerts))
    world.update_alert(tenant, endpoint_id, {"status": "Resolved"})
    other_id = next(iter(tenant.graph_alerts))
    world.update_graph_alert(tenant, other_id, {"status": "inProgress"})
    after = {a.raw["id"]: a.raw for a in security.alerts(tenant)}
    assert list(after) == before  # same places
    assert after[endpoint_id]["status"] == "resolved"
    assert after[other_id]["status"] == "inProgress"
