"""The control API refuses bad input clearly; the demo keeps alerts coming."""

from __future__ import annotations

import time

import pytest
import requests

from devtools.simulator.server import DEMO_TENANTS, Simulator, SimulatorConfig


@pytest.mark.parametrize(("method", "path", "body", "status", "word"), [
    ("POST", "/_sim/tenants", {}, 400, "name"),
    ("POST", "/_sim/tenants", {"name": "X", "id": "not-a-guid"}, 400, "UUID"),
    ("POST", "/_sim/tenants", {"name": "X", "defender": "maybe"}, 400, "defender"),
    ("POST", "/_sim/tenants/6c1b8a4e-0000-4000-8000-000000000000/alerts", [{"id": "a"}], 404,
     "not found"),
    ("PUT", "/_sim/limits", {"per_minute": 0}, 400, "per_minute"),
])
def test_control_api_errors(simulator, method, path, body, status, word):
    r = requests.request(method, f"{simulator.base_url}{path}", json=body, timeout=10,
                         verify=str(simulator.config.ca_path))
    assert r.status_code == status
    assert word in r.json()["error"]


def test_alert_without_id_and_unknown_fault_are_refused(simulator, sim):
    tenant = sim.add_tenant("Picky Co")
    base = f"{simulator.base_url}/_sim/tenants/{tenant['id']}"
    ca = str(simulator.config.ca_path)
    r = requests.post(f"{base}/alerts", json=[{"title": "no id"}], verify=ca, timeout=10)
    assert r.status_code == 400 and "id" in r.json()["error"]
    r = requests.post(f"{base}/faults", json={"kind": "explode"}, verify=ca, timeout=10)
    assert r.status_code == 400 and "kind" in r.json()["error"]
    r = requests.post(f"{base}/alerts", data="{not json", verify=ca, timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["error"]


def test_demo_seeds_tenants_and_keeps_alerts_coming(tmp_path):
    sim = Simulator(SimulatorConfig(ca_path=tmp_path / "ca.pem")).start()
    try:
        tenants = sim.seed_demo()
        assert [t.name for t in tenants] == [name for name, *_ in DEMO_TENANTS]
        assert sum(1 for t in tenants if t.consents) == 4
        sizes = {t.name: len(t.alerts) for t in tenants}
        assert sizes["Northwind Traders"] > 10 * sizes["Fabrikam Inc"] > 0
        before = {t.id: {k: a.raw["lastUpdateTime"] for k, a in t.alerts.items()}
                  for t in tenants}
        sim.start_demo(rate=40)
        time.sleep(1.5)
        new = changed = 0
        for t in tenants:
            for key, stored in t.alerts.items():
                if key not in before[t.id]:
                    new += 1
                elif stored.raw["lastUpdateTime"] != before[t.id][key]:
                    changed += 1
                    assert stored.raw["status"] in ("InProgress", "Resolved")
        assert new > 5 and changed > 1
    finally:
        sim.stop()
