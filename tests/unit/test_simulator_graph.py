"""The simulator's Graph security parts that need no server: the v2 view of an endpoint
alert, other products' alerts, incidents as served, nextLink tokens, the filter schema."""

from __future__ import annotations

import pytest

from devtools.simulator import graph_alerts, graph_incidents, graph_paging
from devtools.simulator.alerts import AlertFactory
from devtools.simulator.clock import parse_ticks
from devtools.simulator.odata import ODataError, parse_filter
from devtools.simulator.world import StoredGraphAlert

TENANT = "3f1c2b4a-0d6e-4b7a-9c8d-1e2f3a4b5c6d"
NOW = parse_ticks("2026-03-01T10:00:00.1234567Z")


def _mde(**changes):
    raw = AlertFactory(TENANT, "contoso.onmicrosoft.com").make(NOW)
    raw["evidence"] = AlertFactory(TENANT, "contoso.onmicrosoft.com").evidence(
        raw["alertCreationTime"], raw["computerDnsName"], "j.doe@contoso.onmicrosoft.com")
    raw["evidence"] += [{"entityType": "File", "sha1": "a" * 40, "sha256": "b" * 64,
                         "fileName": "x.exe", "filePath": "C:\\x", "detectionStatus":
                         "Blocked", "evidenceCreationTime": raw["alertCreationTime"]},
                        {"entityType": "Unknown"}]
    return {**raw, **changes}


def test_an_endpoint_alert_in_the_v2_schema_keeps_its_id_state_and_times():
    raw = _mde(status="Resolved", classification="TruePositive",
               determination="CompromisedUser", severity="UnSpecified", incidentId=4242,
               detectionSource="WindowsDefenderAv", resolvedTime="2026-03-01T11:00:00Z",
               comments=[{"comment": "done", "createdBy": "a@b", "createdTime": "t"}])
    v2 = graph_alerts.from_mde(raw)
    assert v2["id"] == v2["providerAlertId"] == raw["id"]
    assert (v2["status"], v2["classification"], v2["determination"], v2["severity"]) == (
        "resolved", "truePositive", "compromisedAccount", "unknown")
    assert v2["incidentId"] == "4242" and v2["incidentWebUrl"].startswith(
        "https://security.microsoft.com/incidents/4242?tid=")
    assert v2["serviceSource"] == "microsoftDefenderForEndpoint"
    assert v2["detectionSource"] == "antivirus"
    assert (v2["createdDateTime"], v2["lastUpdateDateTime"], v2["resolvedDateTime"]) == (
        raw["alertCreationTime"], raw["lastUpdateTime"], raw["resolvedTime"])
    assert v2["comments"] == [{"comment": "done", "createdByDisplayName": "a@b",
                               "createdDateTime": "t"}]
    kinds = [e["@odata.type"].rsplit(".", 1)[1] for e in v2["evidence"]]
    assert kinds[0] == "deviceEvidence" and "fileEvidence" in kinds
    assert v2["evidence"][0]["deviceDnsName"] == raw["computerDnsName"]
    file = next(e for e in v2["evidence"] if e["@odata.type"].endswith("fileEvidence"))
    assert file["fileDetails"]["sha256"] == "b" * 64 and file["detectionStatus"] == "blocked"
    assert len(v2["evidence"]) == len(raw["evidence"])  # the unknown entity is left out
    new = graph_alerts.from_mde(_mde())
    assert (new["status"], new["classification"], new["determination"]) == (
        "new", "unknown", "unknown")


@pytest.mark.parametrize("product", [p for p in graph_alerts.PRODUCTS
                                     if p != graph_alerts.MDE])
def test_other_products_alerts_are_v2_alerts_that_move_through_analyst_steps(product):
    factory = graph_alerts.GraphAlertFactory(TENANT, "contoso.onmicrosoft.com")
    alert = factory.make(product, NOW)
    assert alert["serviceSource"] == product and alert["status"] == "new"
    assert alert["createdDateTime"] == alert["lastUpdateDateTime"] == "2026-03-01T10:00:00.1234567Z"
    assert alert["evidence"] and all(e["@odata.type"].startswith("#microsoft.graph.security.")
                                     for e in alert["evidence"])
    assert alert["alertWebUrl"].endswith(f"{alert['id']}?tid={TENANT}")
    step = factory.progress(alert, NOW + 10)
    assert step["status"] == "inProgress" and step["assignedTo"]
    done = factory.progress(step, NOW + 20)
    assert done["status"] == "resolved" and done["resolvedDateTime"] == done[
        "lastUpdateDateTime"]
    assert done["classification"] in graph_alerts.CLASSIFICATIONS
    assert done["determination"] in graph_alerts.DETERMINATIONS
    assert factory.progress(done, NOW + 30) is done
    assert alert["status"] == "new"  # a new dict each step


def test_an_incident_as_served_follows_its_alerts():
    alerts = [{"severity": "low", "status": "resolved", "category": "InitialAccess",
               "serviceSource": "a", "lastUpdateDateTime": "2026-03-01T10:00:00.5Z"},
              {"severity": "high", "status": "new", "category": "Execution",
               "serviceSource": "b", "lastUpdateDateTime": "2026-03-01T10:00:00.12Z"}]
    incident = graph_incidents.make("7", TENANT, alerts, "2026-03-01T09:00:00Z")
    assert incident["severity"] == "high" and incident["status"] == "active"
    assert incident["displayName"].startswith("Multi-stage incident involving "
                                              "InitialAccess & Execution")
    served = graph_incidents.view({**incident, "severity": "low"}, alerts)
    assert served["severity"] == "high" and served["status"] == "active"
    assert served["lastUpdateDateTime"] == "2026-03-01T10:00:00.5Z"  # .5 after .12
    alerts[1]["status"] = "resolved"
    assert graph_incidents.view(incident, alerts)["status"] == "resolved"
    redirected = {**incident, "status": "redirected"}
    assert graph_incidents.view(redirected, alerts)["status"] == "redirected"
    assert graph_incidents.view(incident, []) == incident
    moved = graph_incidents.progress(incident, "2026-03-01T12:00:00Z", "secops@x")
    assert (moved["status"], moved["assignedTo"], moved["lastUpdateDateTime"]) == (
        "inProgress", "secops@x", "2026-03-01T12:00:00Z")


def test_next_link_tokens_round_trip_expire_and_refuse_forgeries():
    key = b"k" * 32
    state = graph_paging.PageState("alerts", TENANT, "app", "severity eq 'high'", 50, True,
                                   False, 1234, 1000.0)
    token = graph_paging.encode(state, key)
    assert "severity" not in token  # opaque to a casual reader
    assert graph_paging.decode(token, key, 999.0) == state
    with pytest.raises(graph_paging.Expired):
        graph_paging.decode(token, key, 1000.5)
    with pytest.raises(graph_paging.Expired):  # another simulator's (a restart)
        graph_paging.decode(token, b"x" * 32, 999.0)
    with pytest.raises(graph_paging.Invalid):
        graph_paging.decode("not-a-token", key, 0.0)


def test_the_v2_filter_schema_refuses_what_graph_refuses():
    alert = StoredGraphAlert({"severity": "high", "status": "inProgress",
                              "serviceSource": "microsoftDefenderForOffice365",
                              "lastUpdateDateTime": "2026-03-01T10:00:00Z"}, 1)
    schema = graph_alerts.ALERT_SCHEMA
    assert parse_filter("status eq 'inProgress' and severity eq 'High'", schema)(alert)
    assert parse_filter("lastUpdateDateTime ge 2026-03-01T10:00:00Z", schema)(alert)
    assert not parse_filter("serviceSource eq 'microsoftDefenderForEndpoint'", schema)(alert)
    with pytest.raises(ODataError, match=r"microsoft\.graph\.security\.alert"):
        parse_filter("lastUpdateTime gt 2026-03-01T10:00:00Z", schema)  # Defender's name
    with pytest.raises(ODataError, match="enumeration"):
        parse_filter("severity eq 'critical'", schema)
    with pytest.raises(ODataError):
        parse_filter("title eq 'x'", schema)
    incident = graph_incidents.INCIDENT_SCHEMA
    assert parse_filter("status eq 'redirected'", incident)(
        StoredGraphAlert({"status": "redirected"}, 1))
    with pytest.raises(ODataError):
        parse_filter("serviceSource eq 'microsoftDefenderForEndpoint'", incident)


def test_a_captured_alert_of_any_shape_still_has_a_v2_view():
    odd = {"id": "da1", "status": 5, "severity": ["x"], "evidence": "text", "comments": 3,
           "mitreTechniques": None, "determination": 7, "lastUpdateTime": None}
    v2 = graph_alerts.from_mde(odd)
    assert v2["id"] == "da1" and v2["status"] == 5 and v2["evidence"] == []
    assert v2["comments"] == [] and v2["mitreTechniques"] == []
    incident = graph_incidents.view({"id": "1", "severity": None}, [v2])
    assert incident["severity"] == "unknown" and incident["lastUpdateDateTime"] is None
