"""The simulated Microsoft Graph security API (alerts_v2, incidents) over HTTPS with real
tokens: products, incidents, filters, $top, nextLink chains, expiry, throttling, roles,
faults, one state with the Defender API, and the world kept across restarts."""

from __future__ import annotations

import time

import pytest
import requests

from devtools.simulator.server import Simulator, SimulatorConfig
from tests.integration.sim_helpers import (
    get_alerts,
    get_graph,
    graph_token,
    secret_credential,
    token,
)

PRODUCTS = ["microsoftDefenderForEndpoint", "microsoftDefenderForOffice365",
            "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps",
            "azureAdIdentityProtection"]
INCIDENTS = "/v1.0/security/incidents"


@pytest.fixture
def tenant(simulator, sim):
    return sim.add_tenant("Graph Co", consent=[simulator.config.client_id])


def _chain(simulator, bearer, first_url=None, **params):
    """Every page of a listing, following @odata.nextLink as given."""
    pages = [get_graph(simulator, bearer, first_url or "/v1.0/security/alerts_v2", **params)]
    while True:
        assert pages[-1].status_code == 200, pages[-1].text
        link = pages[-1].json().get("@odata.nextLink")
        if not link:
            return [p.json() for p in pages]
        pages.append(get_graph(simulator, bearer, link))


def test_alerts_of_five_products_correlate_into_incidents(simulator, sim, tenant):
    made = sim.generate_graph(tenant["id"], 8, PRODUCTS, alerts_per_incident=4)
    assert len(made["ids"]) == 8 and len(made["incident_ids"]) == 2
    bearer = graph_token(simulator, tenant["id"])
    body = get_graph(simulator, bearer).json()
    assert body["@odata.context"].endswith("/v1.0/$metadata#security/alerts_v2")
    alerts = body["value"]
    assert {a["id"] for a in alerts} == set(made["ids"])
    assert {a["serviceSource"] for a in alerts} == set(PRODUCTS)
    for alert in alerts:
        assert alert["@odata.type"] == "#microsoft.graph.security.alert"
        for field in ("providerAlertId", "incidentId", "status", "severity", "classification",
                      "determination", "detectionSource", "title", "description",
                      "recommendedActions", "category", "assignedTo", "alertWebUrl",
                      "incidentWebUrl", "tenantId", "createdDateTime", "lastUpdateDateTime",
                      "resolvedDateTime", "firstActivityDateTime", "lastActivityDateTime",
                      "mitreTechniques", "comments", "evidence"):
            assert field in alert, field
        assert alert["tenantId"] == tenant["id"] and alert["status"] == "new"
        assert alert["severity"] in ("informational", "low", "medium", "high")
        assert alert["evidence"] and all(e["@odata.type"].startswith(
            "#microsoft.graph.security.") and "verdict" in e and "remediationStatus" in e
            for e in alert["evidence"])
    kinds = {e["@odata.type"].rsplit(".", 1)[1] for a in alerts for e in a["evidence"]}
    # what every alert of these products carries (an IP is in some of each product's
    # alerts only, so eight alerts do not always show one)
    assert kinds >= {"deviceEvidence", "userEvidence", "urlEvidence", "mailboxEvidence",
                     "analyzedMessageEvidence"}
    files = [e for a in alerts for e in a["evidence"]
             if e["@odata.type"].endswith("fileEvidence")]
    assert all(len(f["fileDetails"]["sha256"]) == 64 for f in files)

    incidents = get_graph(simulator, bearer, INCIDENTS, **{"$expand": "alerts"}).json()
    assert incidents["@odata.context"].endswith("#security/incidents")
    assert {i["id"] for i in incidents["value"]} == set(made["incident_ids"])
    for incident in incidents["value"]:
        assert len(incident["alerts"]) == 4
        assert len({a["serviceSource"] for a in incident["alerts"]}) == 4
        assert {a["incidentId"] for a in incident["alerts"]} == {incident["id"]}
        assert incident["status"] == "active" and incident["incidentWebUrl"]
        assert incident["displayName"].startswith("Multi-stage incident")
    plain = get_graph(simulator, bearer, INCIDENTS).json()["value"]
    assert all("alerts" not in i for i in plain)
    one = get_graph(simulator, bearer, f"{INCIDENTS}/{made['incident_ids'][0]}",
                    **{"$expand": "alerts"}).json()
    assert len(one["alerts"]) == 4
    assert get_graph(simulator, bearer, f"/v1.0/security/alerts_v2/{made['ids'][1]}"
                     ).json()["id"] == made["ids"][1]
    assert get_graph(simulator, bearer, "/v1.0/security/alerts_v2/nope").status_code == 404


def test_endpoint_alerts_are_one_alert_in_both_apis(simulator, sim, tenant):
    made = sim.generate_graph(tenant["id"], 2, ["microsoftDefenderForEndpoint"])
    legacy = sim.generate(tenant["id"], 1)["ids"]  # made the Defender API's way
    graph, defender = graph_token(simulator, tenant["id"]), token(simulator, tenant["id"])
    endpoint = {a["id"]: a for a in get_alerts(simulator, defender,
                                               **{"$expand": "evidence"}).json()["value"]}
    assert set(endpoint) == {*made["ids"], *legacy}
    v2 = {a["id"]: a for a in get_graph(simulator, graph).json()["value"]}
    assert set(v2) == set(endpoint)
    for alert_id, alert in v2.items():
        assert alert["providerAlertId"] == alert_id
        assert alert["serviceSource"] == "microsoftDefenderForEndpoint"
        assert alert["lastUpdateDateTime"] == endpoint[alert_id]["lastUpdateTime"]
        assert alert["title"] == endpoint[alert_id]["title"]
        assert alert["evidence"][0]["deviceDnsName"] == endpoint[alert_id]["computerDnsName"]
    first = made["ids"][0]
    assert v2[first]["incidentId"] == str(endpoint[first]["incidentId"])

    changed = sim.update_alert(tenant["id"], first, {"status": "Resolved",
                                                     "classification": "TruePositive",
                                                     "determination": "CompromisedUser"})
    after = get_graph(simulator, graph, f"/v1.0/security/alerts_v2/{first}").json()
    assert (after["status"], after["classification"], after["determination"]) == (
        "resolved", "truePositive", "compromisedAccount")
    assert after["lastUpdateDateTime"] == changed["lastUpdateTime"]
    incident = get_graph(simulator, graph, f"{INCIDENTS}/{after['incidentId']}").json()
    assert incident["status"] == "resolved"  # its only alert is
    assert incident["lastUpdateDateTime"] == changed["lastUpdateTime"]


def test_a_patch_through_defenders_api_is_what_graph_serves_next(simulator, sim):
    app = simulator.config.client_id
    tenant = sim.add_tenant("Graph Triage Co")
    sim.grant(tenant["id"], app, {"https://api.securitycenter.microsoft.com": [
        "Alert.ReadWrite.All"], "https://graph.microsoft.com": ["SecurityAlert.Read.All"]})
    (alert_id,) = sim.generate_graph(tenant["id"], 1, PRODUCTS[:1])["ids"]
    patched = requests.patch(
        f"{simulator.base_url}/api/alerts/{alert_id}", timeout=30, json={
            "status": "InProgress", "assignedTo": "soc@mssp.test", "comment": "on it"},
        headers={"Authorization": f"Bearer {token(simulator, tenant['id'])}"},
        verify=str(simulator.config.ca_path))
    assert patched.status_code == 200, patched.text
    v2 = get_graph(simulator, graph_token(simulator, tenant["id"]), **{
        "$filter": "status eq 'inProgress' and assignedTo eq 'soc@mssp.test'"}).json()["value"]
    assert [a["id"] for a in v2] == [alert_id]
    assert v2[0]["lastUpdateDateTime"] == patched.json()["lastUpdateTime"]
    assert v2[0]["comments"][-1]["comment"] == "on it"


def test_filters_as_graph_accepts_them(simulator, sim, tenant):
    sim.generate_graph(tenant["id"], 20, PRODUCTS)
    bearer = graph_token(simulator, tenant["id"])
    everything = get_graph(simulator, bearer).json()["value"]
    office = get_graph(simulator, bearer, **{
        "$filter": "serviceSource eq 'microsoftDefenderForOffice365'"}).json()["value"]
    assert len(office) == 4 and {a["serviceSource"] for a in office} == {PRODUCTS[1]}
    high = get_graph(simulator, bearer, **{
        "$filter": "severity eq 'high' or severity eq 'medium'"}).json()["value"]
    assert {a["id"] for a in high} == {a["id"] for a in everything
                                       if a["severity"] in ("high", "medium")}
    times = sorted(a["lastUpdateDateTime"] for a in everything)
    newer = get_graph(simulator, bearer, **{
        "$filter": f"lastUpdateDateTime gt {times[9]} and status eq 'new'",
        "$count": "true"}).json()
    assert newer["@odata.count"] == 10 and len(newer["value"]) == 10
    assert get_graph(simulator, bearer, **{
        "$filter": f"createdDateTime le {times[0]} and assignedTo eq null"}
        ).json()["value"][0]["lastUpdateDateTime"] == times[0]
    incidents = get_graph(simulator, bearer, INCIDENTS, **{
        "$filter": "status eq 'active' and severity ne 'unknown'"}).json()["value"]
    assert len(incidents) == 20


@pytest.mark.parametrize("params", [
    {"$filter": "title eq 'x'"},  # not a filterable property
    {"$filter": "severity eq 'critical'"},  # not a member of the enum
    {"$filter": "lastUpdateDateTime gt '2024-01-01'"},
    {"$filter": "status eq 'new' and"},
    {"$orderby": "lastUpdateDateTime asc"},  # alerts_v2 documents no $orderby
    {"$top": "1001"},
    {"$top": "-1"},
    {"$skip": "501"},
    {"$count": "yes"},
    {"$expand": "evidence"},
])
def test_queries_graph_refuses_get_400_in_graphs_shape(simulator, tenant, params):
    response = get_graph(simulator, graph_token(simulator, tenant["id"]), **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "BadRequest" and error["message"]
    assert {"request-id", "date"} <= set(error["innerError"])


def test_a_top_of_1000_is_allowed_and_pages_are_that_size(simulator, sim, tenant):
    sim.generate_graph(tenant["id"], 1005, ["microsoftDefenderForOffice365"])
    bearer = graph_token(simulator, tenant["id"])
    first = get_graph(simulator, bearer, **{"$top": "1000"}).json()
    assert len(first["value"]) == 1000 and first["@odata.nextLink"]
    assert len(get_graph(simulator, bearer, first["@odata.nextLink"]).json()["value"]) == 5
    sim.graph_settings(page_size=300)  # the server's page size without $top
    assert len(get_graph(simulator, bearer).json()["value"]) == 300


def test_next_link_chain_across_one_shared_last_update_time(simulator, sim, tenant):
    made = sim.generate_graph(tenant["id"], 250, PRODUCTS, alerts_per_incident=5,
                              same_last_update_time=True)
    (shared,) = made["lastUpdateDateTimes"]
    bearer = graph_token(simulator, tenant["id"])
    params = {"$filter": f"lastUpdateDateTime ge {shared}", "$top": "40", "$count": "true"}
    first = get_graph(simulator, bearer, **params).json()
    link = first["@odata.nextLink"]
    assert "$skiptoken=" in link and "$filter" not in link  # opaque: the token is the query
    served = [a["id"] for a in first["value"]]
    sim.generate_graph(tenant["id"], 3, PRODUCTS[:1])  # created while the client pages
    sim.update_alert(tenant["id"], served[0], {"status": "InProgress"}
                     if served[0] in made["ids"][::5] else {"status": "inProgress"})
    pages = [first, *_chain(simulator, bearer, link)]
    served += [a["id"] for p in pages[1:] for a in p["value"]]
    assert len(pages) == 7 and [len(p["value"]) for p in pages] == [40] * 6 + [10]
    assert sorted(served) == sorted(made["ids"])  # each once, none lost
    assert all(p["@odata.count"] == 250 for p in pages[:1])
    assert "@odata.nextLink" not in pages[-1]
    incidents = _chain(simulator, bearer, INCIDENTS, **{"$top": "7", "$expand": "alerts"})
    ids = [i["id"] for p in incidents for i in p["value"]]
    assert len(ids) == len(set(ids)) == 53  # 50, and 3 made while paging
    assert sum(len(i["alerts"]) for p in incidents for i in p["value"]) == 253


def test_an_expired_next_link_answers_410_and_a_changed_one_400(simulator, sim, tenant):
    sim.generate_graph(tenant["id"], 20, PRODUCTS)
    bearer = graph_token(simulator, tenant["id"])
    link = get_graph(simulator, bearer, **{"$top": "5"}).json()["@odata.nextLink"]
    assert get_graph(simulator, bearer, link).status_code == 200  # within its lifetime
    sim.advance_clock(601)  # the default lifetime: 600 s
    expired = get_graph(simulator, graph_token(simulator, tenant["id"]), link)
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "resyncRequired"

    sim.graph_settings(next_link_seconds=0)
    bearer = graph_token(simulator, tenant["id"])
    link = get_graph(simulator, bearer, **{"$top": "5"}).json()["@odata.nextLink"]
    time.sleep(0.01)
    assert get_graph(simulator, bearer, link).status_code == 410
    forged = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
    assert get_graph(simulator, bearer, forged).status_code == 410  # not ours: start again
    sim.graph_settings(next_link_seconds=600)
    link = get_graph(simulator, bearer, **{"$top": "5"}).json()["@odata.nextLink"]
    assert get_graph(simulator, bearer, link + "&$top=10").status_code == 400
    other = sim.add_tenant("Graph Other", consent=[simulator.config.client_id])
    stolen = get_graph(simulator, graph_token(simulator, other["id"]), link)
    assert stolen.status_code == 400  # another tenant's listing
    incidents_link = link.replace("/alerts_v2?", "/incidents?")
    assert get_graph(simulator, bearer, incidents_link).status_code == 400


def test_graph_throttles_per_app_per_tenant(simulator, sim, tenant):
    sim.generate_graph(tenant["id"], 3, PRODUCTS)
    assert sim.limits()["graph"] == {"per_minute": 150, "per_hour": 9000}
    sim.limits(graph={"per_minute": 3})
    bearer = graph_token(simulator, tenant["id"])
    assert [get_graph(simulator, bearer, url).status_code
            for url in ("/v1.0/security/alerts_v2", INCIDENTS, INCIDENTS)] == [200] * 3
    throttled = get_graph(simulator, bearer)
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert get_alerts(simulator, token(simulator, tenant["id"])).status_code == 200
    other = sim.add_tenant("Graph Unthrottled", consent=[simulator.config.client_id])
    assert get_graph(simulator, graph_token(simulator, other["id"])).status_code == 200
    sim.advance_clock(61)
    assert get_graph(simulator, graph_token(simulator, tenant["id"])).status_code == 200


def test_403_without_the_security_roles_and_401_for_a_defender_token(simulator, sim):
    app = simulator.config.client_id
    tenant = sim.add_tenant("Graph Mail Only", consent=[app])
    sim.grant(tenant["id"], app, roles={"https://graph.microsoft.com": ["Mail.Send"]})
    bearer = graph_token(simulator, tenant["id"])
    for url in ("/v1.0/security/alerts_v2", INCIDENTS):
        refused = get_graph(simulator, bearer, url)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "Forbidden"
        assert "SecurityAlert.Read.All" in refused.text or "SecurityIncident" in refused.text
    sim.grant(tenant["id"], app, roles={"https://graph.microsoft.com": [
        "SecurityAlert.Read.All"]})
    bearer = graph_token(simulator, tenant["id"])
    assert get_graph(simulator, bearer).status_code == 200
    assert get_graph(simulator, bearer, INCIDENTS).status_code == 403
    us_cloud = secret_credential(simulator, tenant["id"]).get_token(
        "https://graph.microsoft.us/.default").token  # a US Government cloud's host
    assert get_graph(simulator, us_cloud).status_code == 200
    defender = get_graph(simulator, token(simulator, tenant["id"]))
    assert defender.status_code == 401
    assert defender.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert get_graph(simulator, "").status_code == 401


def test_faults_apply_to_graph_too(simulator, sim, tenant):
    sim.generate_graph(tenant["id"], 150, PRODUCTS)
    bearer = graph_token(simulator, tenant["id"])
    sim.fault(tenant["id"], "status", status=503, retry_after=7)
    failed = get_graph(simulator, bearer)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "7"
    assert failed.json()["error"]["innerError"]
    sim.fault(tenant["id"], "status", status=429, retry_after=4)
    assert get_graph(simulator, bearer, INCIDENTS).headers["Retry-After"] == "4"
    sim.fault(tenant["id"], "cut", after=120)
    cut = get_graph(simulator, bearer, **{"$top": "150"})
    with pytest.raises(ValueError):
        cut.json()
    assert get_graph(simulator, bearer, **{"$top": "150"}).status_code == 200


def test_updates_move_last_update_date_time(simulator, sim, tenant):
    made = sim.generate_graph(tenant["id"], 6, PRODUCTS[1:], alerts_per_incident=3)
    bearer = graph_token(simulator, tenant["id"])
    before = get_graph(simulator, bearer).json()["value"]
    latest = max(a["lastUpdateDateTime"] for a in before)
    moved = sim.update_alert(tenant["id"], made["ids"][0])  # the next analyst step
    assert moved["status"] == "inProgress" and moved["assignedTo"]
    resolved = sim.update_alert(tenant["id"], made["ids"][0])
    assert resolved["status"] == "resolved" and resolved["classification"] != "unknown"
    assert resolved["resolvedDateTime"] == resolved["lastUpdateDateTime"]
    since = get_graph(simulator, bearer, **{
        "$filter": f"lastUpdateDateTime gt {latest}"}).json()["value"]
    assert [a["id"] for a in since] == [made["ids"][0]]
    assert since[0]["comments"][-1]["comment"] == "Moved to resolved"

    touched = sim.touch_alerts(tenant["id"])
    assert len(touched["ids"]) == 6
    same = get_graph(simulator, bearer, **{
        "$filter": f"lastUpdateDateTime eq {touched['lastUpdateDateTime']}"}).json()
    assert len(same["value"]) == 6
    incident = sim.update_incident(tenant["id"], made["incident_ids"][1])
    assert incident["status"] == "inProgress"
    served = get_graph(simulator, bearer, INCIDENTS, **{
        "$filter": f"lastUpdateDateTime gt {touched['lastUpdateDateTime']}"}).json()["value"]
    assert [i["id"] for i in served] == [made["incident_ids"][1]]
    assert served[0]["assignedTo"] and served[0]["status"] == "inProgress"


def test_raw_v2_alerts_and_incidents_are_served_as_given(simulator, sim, tenant):
    captured = {"@odata.type": "#microsoft.graph.security.alert", "id": "fa1<script>",
                "serviceSource": "microsoftDefenderForOffice365", "severity": "high",
                "status": "new", "title": "Hostile <b>title</b> | x=y\\",
                "createdDateTime": "2024-01-02T03:04:05.1234567Z",
                "lastUpdateDateTime": "2024-01-02T03:04:05.1234567Z",
                "evidence": [{"@odata.type": "#microsoft.graph.security.urlEvidence",
                              "url": "javascript:alert(1)"}], "unknownFutureField": [1]}
    sim.add_alerts(tenant["id"], [captured])
    sim.add_incidents(tenant["id"], [{"id": "77", "displayName": "<img src=x>",
                                      "status": "active", "severity": "low",
                                      "createdDateTime": "2024-01-02T03:04:05Z",
                                      "lastUpdateDateTime": "2024-01-02T03:04:05Z",
                                      "alertIds": ["fa1<script>"]}])
    bearer = graph_token(simulator, tenant["id"])
    assert get_graph(simulator, bearer).json()["value"] == [captured]
    (incident,) = get_graph(simulator, bearer, INCIDENTS,
                            **{"$expand": "alerts"}).json()["value"]
    assert incident["alerts"] == [captured] and incident["severity"] == "high"
    assert incident["lastUpdateDateTime"] == captured["lastUpdateDateTime"]
    assert sim.graph_alerts(tenant["id"]) == [captured]


def test_graph_alerts_and_incidents_survive_a_restart(tmp_path):
    def start() -> Simulator:
        return Simulator(SimulatorConfig(ca_path=tmp_path / "ca.pem",
                                         state_path=tmp_path / "world.json")).start()

    first = start()
    tenant = first.world.add_tenant("Kept Graph Co")
    first.world.grant(tenant, first.app.client_id)
    alerts, incidents = first.world.generate_graph(tenant, 10, PRODUCTS, 5)
    first.world.update_incident(tenant, incidents[0], {"assignedTo": "kept@x.test"})
    before = (first.security.alerts(tenant), first.security.incidents(tenant, True))
    first.stop()
    second = start()
    try:
        kept = second.world.find_tenant(tenant.id)
        after = (second.security.alerts(kept), second.security.incidents(kept, True))
        assert [a.raw for a in after[0]] == [a.raw for a in before[0]]
        assert [i.raw for i in after[1]] == [i.raw for i in before[1]]
        assert after[1][-1].raw["assignedTo"] == "kept@x.test"
        more, _ = second.world.generate_graph(kept, 5, PRODUCTS)
        assert not {a["id"] for a in more} & {a["id"] for a in alerts}
        bearer = graph_token(second, kept.id)
        assert len(get_graph(second, bearer).json()["value"]) == 15
    finally:
        second.stop()


def test_the_control_api_refuses_what_it_cannot_make(sim, tenant):
    with pytest.raises(RuntimeError, match="service_sources"):
        sim.generate_graph(tenant["id"], 2, ["microsoftDefenderForToasters"])
    with pytest.raises(RuntimeError, match="endpoint alert"):
        endpoint = sim.generate(tenant["id"], 1)["ids"][0]
        sim.add_alerts(tenant["id"], [{"id": endpoint, "serviceSource": "x"}])
    with pytest.raises(RuntimeError, match="404"):
        sim.update_incident(tenant["id"], "404404")
    with pytest.raises(RuntimeError, match="next_link_seconds"):
        sim.graph_settings(next_link_seconds=-1)
    assert sim.tenant(tenant["id"])["graph_alerts"] == 0
