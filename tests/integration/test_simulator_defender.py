"""The simulated Defender alerts API over HTTPS with real tokens."""

from __future__ import annotations

import pytest
import requests

from shared import timefmt
from tests.integration.sim_helpers import get_alerts, token


@pytest.fixture
def tenant(simulator, sim):
    return sim.add_tenant("Defender Co", consent=[simulator.config.client_id])


def test_filter_order_top_skip_and_no_next_link(simulator, sim, tenant):
    sim.generate(tenant["id"], 30)
    bearer = token(simulator, tenant["id"])
    everything = get_alerts(simulator, bearer, **{"$orderby": "lastUpdateTime asc"}).json()
    assert len(everything["value"]) == 30
    assert everything["@odata.context"].endswith("/api/$metadata#Alerts")
    times = [a["lastUpdateTime"] for a in everything["value"]]
    # in time order (Defender trims trailing zeros of the 7 fractional digits, so the
    # strings alone do not sort: "59.5913Z" is before "59.591387Z")
    assert times == sorted(times, key=timefmt.normalize)
    middle = times[10]
    page = get_alerts(simulator, bearer, **{
        "$filter": f"lastUpdateTime gt {middle}", "$orderby": "lastUpdateTime asc",
        "$top": "5", "$skip": "2"}).json()
    assert "@odata.nextLink" not in page
    assert [a["id"] for a in page["value"]] == [a["id"] for a in everything["value"][13:18]]
    desc = get_alerts(simulator, bearer, path="/api/v1.0/alerts",
                      **{"$orderby": "lastUpdateTime desc", "$top": "3"}).json()["value"]
    assert [a["id"] for a in desc] == [a["id"] for a in everything["value"][::-1][:3]]


def test_evidence_only_when_expanded(simulator, sim, tenant):
    sim.generate(tenant["id"], 3)
    bearer = token(simulator, tenant["id"])
    plain = get_alerts(simulator, bearer).json()["value"]
    expanded = get_alerts(simulator, bearer, **{"$expand": "evidence"}).json()["value"]
    assert all(a["evidence"] == [] for a in plain)
    assert all(len(a["evidence"]) >= 2 for a in expanded)
    assert {e["entityType"] for a in expanded for e in a["evidence"]} >= {"User", "Process"}


def test_every_field_of_the_alert_entity_is_present(simulator, sim, tenant):
    sim.generate(tenant["id"], 1)
    alert = get_alerts(simulator, token(simulator, tenant["id"])).json()["value"][0]
    for field in ("id", "title", "description", "alertCreationTime", "firstEventTime",
                  "lastEventTime", "lastUpdateTime", "resolvedTime", "incidentId",
                  "investigationId", "investigationState", "assignedTo", "severity", "status",
                  "classification", "determination", "category", "detectionSource",
                  "detectorId", "threatFamilyName", "threatName", "machineId",
                  "computerDnsName", "rbacGroupName", "aadTenantId", "mitreTechniques",
                  "relatedUser", "comments", "evidence"):
        assert field in alert, field
    assert alert["aadTenantId"] == tenant["id"]
    assert alert["severity"] in ("UnSpecified", "Informational", "Low", "Medium", "High")


def test_raw_alerts_are_served_as_given_and_updates_move_last_update_time(simulator, sim,
                                                                           tenant):
    captured = {"id": "da638000000000000000_1", "title": "Captured <b>payload</b> | x=y\\",
                "severity": "High", "status": "New", "category": "Execution",
                "detectionSource": "WindowsDefenderAtp", "unknownFutureField": {"a": [1]},
                "alertCreationTime": "2024-01-02T03:04:05.1234567Z",
                "lastUpdateTime": "2024-01-02T03:04:05.1234567Z", "evidence": [{"x": 1}]}
    sim.add_alerts(tenant["id"], [captured])
    bearer = token(simulator, tenant["id"])
    served = get_alerts(simulator, bearer, **{"$expand": "evidence"}).json()["value"]
    assert served == [captured]

    changed = sim.update_alert(tenant["id"], captured["id"], {"status": "Resolved"})
    assert changed["lastUpdateTime"] > captured["lastUpdateTime"]
    newer = get_alerts(simulator, bearer, **{
        "$filter": "lastUpdateTime gt 2024-01-02T03:04:05.1234567Z"}).json()["value"]
    assert [a["status"] for a in newer] == ["Resolved"]


def test_alerts_progress_through_analyst_states(simulator, sim, tenant):
    alert_id = sim.generate(tenant["id"], 1)["ids"][0]
    first = sim.update_alert(tenant["id"], alert_id)
    assert first["status"] == "InProgress" and first["assignedTo"]
    second = sim.update_alert(tenant["id"], alert_id)
    assert second["status"] == "Resolved"
    assert second["classification"] and second["determination"] and second["resolvedTime"]
    assert second["lastUpdateTime"] > first["lastUpdateTime"]


def test_burst_sharing_one_last_update_time(simulator, sim, tenant):
    made = sim.generate(tenant["id"], 250, same_last_update_time=True)
    assert len(made["ids"]) == len(set(made["ids"])) == 250
    (stamp,) = made["lastUpdateTimes"]
    bearer = token(simulator, tenant["id"])
    found = get_alerts(simulator, bearer, **{"$filter": f"lastUpdateTime eq {stamp}"}).json()
    assert len(found["value"]) == 250


@pytest.mark.parametrize("params", [
    {"$filter": "lastUpdateTime ge yesterday"},
    {"$filter": "machineId eq 'x'"},
    {"$top": "10001"},
    {"$top": "-1"},
    {"$orderby": "severity"},
    {"$expand": "machines"},
])
def test_bad_queries_get_400_in_defenders_shape(simulator, tenant, params):
    r = get_alerts(simulator, token(simulator, tenant["id"]), **params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"code", "message", "target"}
    assert error["message"]


def test_top_of_ten_thousand_is_allowed(simulator, tenant):
    r = get_alerts(simulator, token(simulator, tenant["id"]), **{"$top": "10000"})
    assert r.status_code == 200


def test_bad_and_expired_tokens_get_401(simulator, sim, tenant):
    assert get_alerts(simulator, "garbage").status_code == 401
    r = requests.get(f"{simulator.base_url}/api/alerts", verify=str(simulator.config.ca_path),
                     timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "Unauthorized"
    bearer = token(simulator, tenant["id"])
    assert get_alerts(simulator, bearer).status_code == 200
    sim.advance_clock(3601)
    assert get_alerts(simulator, bearer).status_code == 401
    assert get_alerts(simulator, token(simulator, tenant["id"])).status_code == 200


def test_missing_role_and_disabled_defender_get_403(simulator, sim):
    app = simulator.config.client_id
    no_role = sim.add_tenant("No Role Co")
    sim.grant(no_role["id"], app, roles={})
    r = get_alerts(simulator, token(simulator, no_role["id"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "Forbidden"
    disabled = sim.add_tenant("Lapsed Co", consent=[app], defender="disabled")
    r = get_alerts(simulator, token(simulator, disabled["id"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "DisabledFeature"


def test_revocation_invalidates_tokens_already_issued(simulator, sim, tenant):
    bearer = token(simulator, tenant["id"])
    sim.revoke(tenant["id"], simulator.config.client_id)
    assert get_alerts(simulator, bearer).status_code == 401


def test_default_limit_of_100_calls_a_minute(simulator, sim, tenant):
    bearer = token(simulator, tenant["id"])
    statuses = [get_alerts(simulator, bearer, **{"$top": "1"}).status_code for _ in range(101)]
    assert statuses[:100] == [200] * 100
    assert statuses[100] == 429
    throttled = get_alerts(simulator, bearer)
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    counters = sim.counters()["tenants"][tenant["id"]]
    assert counters["calls"] == 102
    assert counters["throttled"] == 2
    assert sum(counters["calls_per_minute"].values()) == 102


def test_hour_window_outlasts_the_minute_window(simulator, sim, tenant):
    sim.limits(per_minute=3, per_hour=5)
    bearer = token(simulator, tenant["id"])
    assert [get_alerts(simulator, bearer).status_code for _ in range(4)] == [200] * 3 + [429]
    sim.advance_clock(61)
    bearer = token(simulator, tenant["id"])
    statuses = [get_alerts(simulator, bearer) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) > 60  # waits for the hour window


def test_limits_are_per_tenant(simulator, sim, tenant):
    sim.limits(per_minute=2, per_hour=100)
    other = sim.add_tenant("Other Co", consent=[simulator.config.client_id])
    one, two = token(simulator, tenant["id"]), token(simulator, other["id"])
    assert [get_alerts(simulator, one).status_code for _ in range(3)] == [200, 200, 429]
    assert get_alerts(simulator, two).status_code == 200


@pytest.mark.parametrize(("fault", "status"), [
    ({"kind": "status", "status": 500}, 500),
    ({"kind": "status", "status": 503}, 503),
    ({"kind": "status", "status": 429, "retry_after": 7}, 429),
])
def test_status_faults_then_recovery(simulator, sim, tenant, fault, status):
    sim.fault(tenant["id"], count=2, **fault)
    bearer = token(simulator, tenant["id"])
    first, second = get_alerts(simulator, bearer), get_alerts(simulator, bearer)
    assert first.status_code == second.status_code == status
    assert set(first.json()["error"]) == {"code", "message", "target"}
    if status == 429:
        assert first.headers["Retry-After"] == "7"
    assert get_alerts(simulator, bearer).status_code == 200


def test_hang_fault_outlasts_the_client_timeout(simulator, sim, tenant):
    sim.fault(tenant["id"], "hang", seconds=3)
    bearer = token(simulator, tenant["id"])
    with pytest.raises(requests.Timeout):
        get_alerts(simulator, bearer, timeout=0.5)
    assert get_alerts(simulator, bearer).status_code == 200


def test_malformed_json_fault(simulator, sim, tenant):
    sim.fault(tenant["id"], "malformed")
    bearer = token(simulator, tenant["id"])
    r = get_alerts(simulator, bearer)
    assert r.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        r.json()
    assert get_alerts(simulator, bearer).json()["value"] == []


def test_pages_are_streamed_and_a_cut_fault_breaks_one_off(simulator, sim, tenant):
    sim.generate(tenant["id"], 250)
    bearer = token(simulator, tenant["id"])
    whole = get_alerts(simulator, bearer)  # requests asks for gzip, as the workers do
    assert whole.headers.get("Transfer-Encoding") == "chunked"
    assert whole.headers.get("Content-Encoding") == "gzip"
    assert len(whole.json()["value"]) == 250
    plain = requests.get(f"{simulator.base_url}/api/alerts", timeout=30,
                         headers={"Authorization": f"Bearer {bearer}",
                                  "Accept-Encoding": "identity"},
                         verify=str(simulator.config.ca_path))
    assert "Content-Encoding" not in plain.headers and plain.json() == whole.json()
    sim.fault(tenant["id"], "cut", after=120)
    cut = get_alerts(simulator, bearer)
    assert cut.status_code == 200
    with pytest.raises(requests.JSONDecodeError):
        cut.json()
    assert cut.text.count('"detectionSource"') == 120  # one per alert served
    assert len(get_alerts(simulator, bearer).json()["value"]) == 250


def test_counters_count_tokens(simulator, sim, tenant):
    before = sim.counters()["tenants"][tenant["id"]]["tokens"]
    token(simulator, tenant["id"])
    token(simulator, tenant["id"])
    assert sim.counters()["tenants"][tenant["id"]]["tokens"] == before + 2
