"""The simulated Defender's alert updates over HTTPS with real tokens: PATCH and
batchUpdate, Defender's validation and error bodies, comments, times, their rate limits,
403 for a read-only grant, and the changes kept across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from devtools.simulator import snapshot
from devtools.simulator.world import World
from tests.integration.sim_helpers import token

AUDIENCE = "https://api.securitycenter.microsoft.com"
READ_WRITE = {AUDIENCE: ["Alert.ReadWrite.All"]}


@pytest.fixture
def tenant(simulator, sim):
    made = sim.add_tenant("Triage Co")
    sim.grant(made["id"], simulator.config.client_id, READ_WRITE)
    return made


def call(simulator, bearer, method, path, body=None):
    return requests.request(method, f"{simulator.base_url}{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {bearer}"},
                            verify=str(simulator.config.ca_path))


def patch(simulator, bearer, alert_id, body):
    return call(simulator, bearer, "PATCH", f"/api/alerts/{alert_id}", body)


def batch(simulator, bearer, body):
    return call(simulator, bearer, "POST", "/api/alerts/batchUpdate", body)


def test_get_one_alert_with_evidence_when_expanded_and_404_unknown(simulator, sim, tenant):
    alert_id = sim.generate(tenant["id"], 1)["ids"][0]
    bearer = token(simulator, tenant["id"])
    plain = call(simulator, bearer, "GET", f"/api/alerts/{alert_id}").json()
    full = call(simulator, bearer, "GET", f"/api/alerts/{alert_id}?$expand=evidence").json()
    assert plain["id"] == full["id"] == alert_id
    assert plain["evidence"] == [] and len(full["evidence"]) >= 2
    missing = call(simulator, bearer, "GET", "/api/alerts/da000_1")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NotFound"


def test_patch_changes_the_alert_and_answers_it(simulator, sim, tenant):
    alert = sim.generate(tenant["id"], 1)
    alert_id, before = alert["ids"][0], alert["lastUpdateTimes"][0]
    bearer = token(simulator, tenant["id"])
    answer = patch(simulator, bearer, alert_id, {
        "status": "Resolved", "assignedTo": "secops@mssp.example",
        "classification": "FalsePositive", "determination": "Clean",
        "comment": "benign <script>alert(1)</script>"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["assignedTo"], body["classification"],
            body["determination"]) == ("Resolved", "secops@mssp.example", "FalsePositive",
                                       "Clean")
    assert body["lastUpdateTime"] > before
    assert body["resolvedTime"] == body["lastUpdateTime"]
    assert body["comments"][-1] == {"comment": "benign <script>alert(1)</script>",
                                    "createdBy": "MSSP Hub (simulated)",
                                    "createdTime": body["lastUpdateTime"]}
    stored = next(a for a in sim.alerts(tenant["id"]) if a["id"] == alert_id)
    assert stored["status"] == "Resolved" and stored["comments"] == body["comments"]

    reopened = patch(simulator, bearer, alert_id, {"status": "InProgress"}).json()
    assert reopened["resolvedTime"] is None
    assert reopened["lastUpdateTime"] > body["lastUpdateTime"]
    commented = patch(simulator, bearer, alert_id, {"comment": "still looking"}).json()
    assert commented["lastUpdateTime"] > reopened["lastUpdateTime"]
    assert [c["comment"] for c in commented["comments"]][-2:] == [
        "benign <script>alert(1)</script>", "still looking"]


@pytest.mark.parametrize(("body", "named"), [
    ({"status": "Closed"}, "status"),
    ({"classification": "Benign"}, "classification"),
    ({"classification": "FalsePositive", "determination": "Malware"}, "determination"),
    ({"determination": "Malware"}, "classification"),
    ({"severity": "Low"}, "severity"),
    ({}, "empty"),
    ({"comment": "   "}, "comment"),
])
def test_patch_refuses_what_defender_refuses_and_changes_nothing(simulator, sim, tenant,
                                                                  body, named):
    alert_id = sim.generate(tenant["id"], 1)["ids"][0]
    before = next(a for a in sim.alerts(tenant["id"]) if a["id"] == alert_id)
    answer = patch(simulator, token(simulator, tenant["id"]), alert_id, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] in ("BadRequest", "InvalidRequestBody")
    assert named in error["message"]
    assert next(a for a in sim.alerts(tenant["id"]) if a["id"] == alert_id) == before


def test_patch_of_an_unknown_alert_is_404(simulator, sim, tenant):
    answer = patch(simulator, token(simulator, tenant["id"]), "da999_1", {"status": "New"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NotFound"


def test_both_spellings_of_a_determination_are_accepted(simulator, sim, tenant):
    ids = sim.generate(tenant["id"], 2)["ids"]
    bearer = token(simulator, tenant["id"])
    for alert_id, determination in zip(ids, ("CompromisedUser", "CompromisedAccount"),
                                       strict=True):
        answer = patch(simulator, bearer, alert_id, {"classification": "TruePositive",
                                                     "determination": determination})
        assert answer.status_code == 200
        assert answer.json()["determination"] == determination


def test_batch_update_changes_every_alert_or_none(simulator, sim, tenant):
    ids = sim.generate(tenant["id"], 3)["ids"]
    bearer = token(simulator, tenant["id"])
    refused = batch(simulator, bearer, {"alertIds": [*ids, "da404_1"], "status": "Resolved"})
    assert refused.status_code == 400
    assert "da404_1" in refused.json()["error"]["message"]
    assert {a["status"] for a in sim.alerts(tenant["id"])} == {"New"}

    done = batch(simulator, bearer, {"alertIds": ids, "status": "Resolved",
                                     "classification": "TruePositive",
                                     "determination": "Malware", "comment": "bulk"})
    assert done.status_code == 200 and done.content == b""
    after = {a["id"]: a for a in sim.alerts(tenant["id"])}
    assert all(after[i]["status"] == "Resolved" and after[i]["resolvedTime"]
               and after[i]["comments"][-1]["comment"] == "bulk" for i in ids)
    for body, named in (({"alertIds": [], "status": "New"}, "alertIds"),
                        ({"status": "New"}, "alertIds"),
                        ({"alertIds": ids, "color": "red"}, "color")):
        answer = batch(simulator, bearer, body)
        assert answer.status_code == 400 and named in answer.json()["error"]["message"]


def test_a_read_only_grant_may_read_but_not_write(simulator, sim):
    made = sim.add_tenant("Read Only Co", consent=[simulator.config.client_id])
    alert_id = sim.generate(made["id"], 1)["ids"][0]
    bearer = token(simulator, made["id"])
    assert call(simulator, bearer, "GET", f"/api/alerts/{alert_id}").status_code == 200
    for answer in (patch(simulator, bearer, alert_id, {"status": "Resolved"}),
                   batch(simulator, bearer, {"alertIds": [alert_id], "status": "Resolved"})):
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "Forbidden"
        assert "Alert.ReadWrite.All" in answer.json()["error"]["message"]
    assert sim.alerts(made["id"])[0]["status"] == "New"


def test_batch_update_has_its_own_rate_limit_and_patch_shares_the_apis(simulator, sim,
                                                                        tenant):
    ids = sim.generate(tenant["id"], 2)["ids"]
    bearer = token(simulator, tenant["id"])
    sim.limits(per_minute=3, per_hour=100, batch={"per_minute": 2, "per_hour": 50})
    for _ in range(2):
        assert batch(simulator, bearer, {"alertIds": ids, "comment": "x"}).status_code == 200
    throttled = batch(simulator, bearer, {"alertIds": ids, "comment": "x"})
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    # the alerts API's budget is untouched by the batches, and PATCH draws on it
    assert call(simulator, bearer, "GET", "/api/alerts").status_code == 200
    assert patch(simulator, bearer, ids[0], {"comment": "y"}).status_code == 200
    assert patch(simulator, bearer, ids[0], {"comment": "y"}).status_code == 200
    assert patch(simulator, bearer, ids[0], {"comment": "y"}).status_code == 429
    counted = sim.counters()["tenants"][tenant["id"]]
    assert (counted["patches"], counted["batch_updates"]) == (3, 3)  # asked, throttled too


def test_written_changes_survive_a_restart(simulator, sim, tenant, tmp_path: Path):
    alert_id = sim.generate(tenant["id"], 1)["ids"][0]
    patch(simulator, token(simulator, tenant["id"]), alert_id,
          {"status": "Resolved", "comment": "kept"})
    snapshot.save(simulator.world, tmp_path / "world.json")
    restored = World()
    assert snapshot.load(restored, tmp_path / "world.json")
    raw = restored.tenants[tenant["id"]].alerts[alert_id].raw
    assert raw["status"] == "Resolved" and raw["comments"][-1]["comment"] == "kept"


def test_the_write_permissions_other_spelling_reads_and_writes(simulator, sim):
    made = sim.add_tenant("Other Spelling Co")
    sim.grant(made["id"], simulator.config.client_id, {AUDIENCE: ["Alerts.ReadWrite.All"]})
    alert_id = sim.generate(made["id"], 1)["ids"][0]
    bearer = token(simulator, made["id"])
    assert call(simulator, bearer, "GET", f"/api/alerts/{alert_id}").status_code == 200
    assert patch(simulator, bearer, alert_id, {"status": "InProgress"}).status_code == 200
