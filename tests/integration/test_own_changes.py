"""Changes the MSSP made itself, through Azurite and the simulator: the answer stored at
once with its one event (`by` set), the next fetch adding none; a change left to the
fetch still says who made it; the customer's own change says nobody."""

from __future__ import annotations

import pytest

from shared.ingest.own_changes import OwnChanges
from shared.services import own_changes_on
from shared.triage.model import Actor

ANN = Actor("oid-ann", "Ann Analyst", "entra")
BY_ANN = {"id": "oid-ann", "name": "Ann Analyst", "via": "entra"}


@pytest.fixture
def own(pipeline) -> OwnChanges:
    return own_changes_on(pipeline.storage)


def _fetched(pipeline, name: str):
    tenant = pipeline.add_tenant(name, alerts=5)
    pipeline.fetch(tenant)
    pipeline.events(tenant.tenant_id)
    ids = [a["id"] for a in pipeline.sim.alerts(tenant.tenant_id)]
    return tenant, ids


def test_an_answer_stored_at_once_is_one_event_and_the_fetch_adds_none(pipeline, own):
    tenant, ids = _fetched(pipeline, "Own Store Co")
    evidence = pipeline.rows(tenant.tenant_id)[ids[2]].get("evidence")
    change = {"status": "Resolved", "classification": "FalsePositive",
              "determination": "Other"}
    own.expect(tenant.tenant_id, [ids[2]], {**change, "comment": "benign"}, ANN)
    answer = pipeline.sim.update_alert(tenant.tenant_id, ids[2], change)
    answer.pop("evidence", None)  # Defender's PATCH answers without it
    result = own.store(tenant.tenant_id, answer, ANN)
    assert (result.stored, result.event) == (True, True)
    row = pipeline.rows(tenant.tenant_id)[ids[2]]
    assert row["status"] == "Resolved" and row.get("evidence") == evidence
    (event,) = pipeline.events(tenant.tenant_id)
    assert (event["alert_id"], event["change"], event["by"]) == (ids[2], "updated", BY_ANN)
    assert event["changed"]["status"] == ["New", "Resolved"]
    run = pipeline.fetch(tenant)
    assert (run.new, run.changed) == (0, 0)
    assert pipeline.events(tenant.tenant_id) == []


def test_a_change_left_to_the_fetch_says_who_and_the_customers_says_nobody(pipeline, own):
    tenant, ids = _fetched(pipeline, "Own Fetch Co")
    own.expect(tenant.tenant_id, ids[:2], {"assignedTo": "ann@mssp.example"}, ANN)
    for alert_id in ids[:2]:  # a batch update: Defender answers nothing to store
        pipeline.sim.update_alert(tenant.tenant_id, alert_id,
                                  {"assignedTo": "ann@mssp.example"})
    pipeline.sim.update_alert(tenant.tenant_id, ids[3], {"status": "InProgress"})
    run = pipeline.fetch(tenant)
    assert run.changed == 3
    by = {e["alert_id"]: e.get("by") for e in pipeline.events(tenant.tenant_id)}
    assert by == {ids[0]: BY_ANN, ids[1]: BY_ANN, ids[3]: None}
