"""A graph tenant's incidents through the simulator's Graph and Azurite: alerts of four
products correlated into incidents, each incident stored once with one event per
version; an incident whose severity rises emailed once by an incident rule; incident
events in the pull API; hostile incident text escaped in the email."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from shared.messages import IncidentEvent
from shared.model import Tenant
from shared.notify.rules import parse_rule
from shared.notify.service import transport_for
from shared.services import feed_on, incidents_repo, notifier_for
from shared.siem.feed import Filters
from shared.siem.pull import item
from tests.helpers import settings as make_settings
from tests.integration.ingest_fixtures import Pipeline, ingest_env
from tests.integration.ingest_fixtures import pipeline as pipeline  # the fixture
from tests.integration.test_ingest_idle import storage_requests

PRODUCTS = ["microsoftDefenderForEndpoint", "microsoftDefenderForOffice365",
            "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps"]
HOSTILE = "<script>alert(1)</script> & \"quoted\""


def _graph(pipeline: Pipeline) -> Pipeline:
    return pipeline.with_settings(GRAPH_BASE_URL=pipeline.simulator.base_url,
                                  FETCH_PAGE_SIZE="3")


def _tenant(pipeline: Pipeline, name: str) -> Tenant:
    created = pipeline.sim.add_tenant(name, consent=[pipeline.simulator.config.client_id])
    return pipeline.tenants.add(Tenant(created["id"], name, source="graph"))


def test_incidents_stored_once_then_a_severity_rise_is_one_event_and_one_email(pipeline):
    graph = _graph(pipeline)
    tenant = _tenant(pipeline, "Incident Co")
    tid = tenant.tenant_id
    made = pipeline.sim.generate_graph(tid, 8, PRODUCTS, alerts_per_incident=2,
                                       age_seconds=600)
    assert len(made["incident_ids"]) == 4
    # one more, of no alert, low: its severity is its own (the simulator's view)
    when = made["lastUpdateDateTimes"][-1]
    pipeline.sim.add_incidents(tid, [{
        "id": "990001", "tenantId": tid, "displayName": "Quiet one", "status": "active",
        "severity": "low", "assignedTo": None, "classification": "unknown",
        "determination": "unknown", "customTags": [], "systemTags": [],
        "incidentWebUrl": "https://security.microsoft.com/incidents/990001",
        "createdDateTime": when, "lastUpdateDateTime": when, "alertIds": []}])
    made["incident_ids"].append("990001")
    run = graph.fetch(tenant)
    assert run.outcome == "success" and run.new == 8
    repo = incidents_repo(graph.settings)
    stored = {i: repo.get(tid, i) for i in made["incident_ids"]}
    assert all(stored.values())
    assert all(len(i.alert_ids) == 2 for k, i in stored.items() if i and k != "990001")
    pipeline.events(tid)
    first = list(pipeline.incident_events)
    assert sorted(e["incident_id"] for e in first) == sorted(made["incident_ids"])
    assert {e["change"] for e in first} == {"new"}
    # again: nothing new (the overlap re-read is recognised)
    graph.fetch(tenant)
    pipeline.events(tid)
    assert pipeline.incident_events == first
    # the incident's severity rises (and its name turns hostile)
    target = "990001"
    before = stored[target]
    assert before is not None and before.severity == "low"
    pipeline.sim.update_incident(tid, target, {"severity": "high", "displayName": HOSTILE,
                                               "status": "inProgress"})
    graph.fetch(tenant)
    graph.fetch(tenant)
    pipeline.events(tid)
    updates = [e for e in pipeline.incident_events if e["change"] == "updated"]
    assert len(updates) == 1 and updates[0]["incident_id"] == target
    assert updates[0]["incident"]["name"] == HOSTILE
    listed = repo.listed(tenants=(tid,), limit=50).items
    assert sorted(i.incident_id for i in listed) == sorted(made["incident_ids"])
    assert listed[0].incident_id == target

    # notify: a rule on incidents; the update emailed once only if the severity rose
    env = ingest_env(pipeline.simulator, pipeline.storage, MAIL_FROM="alerts@mssp.example")
    settings = make_settings(**env)
    notifier = notifier_for(settings, transport_for(settings))
    notifier.rules.save(parse_rule({"name": "incidents", "recipients": ["soc@mssp.example"],
                                    "on_new": False, "incidents": "new_or_severity_rise"},
                                   tid))
    events = [IncidentEvent.from_data(e) for e in pipeline.incident_events]
    for _ in range(2):  # redelivered: one email per incident version
        notifier.handle_all(events)
    kept = [m for m in notifier.outbox.recent(tid) if m.rule]
    assert len(kept) == len(first) + 1  # each new incident, and the rise
    risen = [m for m in kept if "severity raised" in m.subject]
    assert len(risen) == 1
    assert "&lt;script&gt;" in risen[0].html and "<script>" not in risen[0].html

    # SIEM: the pull API returns the incident versions as their own type
    feed = feed_on(pipeline.storage, 0, 30)
    feed.append_all(events)
    time.sleep(0.01)
    position, items = feed.start(datetime.now(UTC) - timedelta(hours=1)), []
    while True:
        page = feed.read(position, 100, Filters(tenants=(tid,)))
        items += [item(e) for e in page.events]
        position = page.position
        if not page.more:
            break
    assert sorted(i.event_id for i in items) == sorted(e.event_id for e in events)
    assert {i.type for i in items} == {"incident"}


def test_incidents_add_one_call_and_one_storage_request_to_an_idle_graph_fetch(
        pipeline):
    """docs/ingest.md: incidents add one Graph call and one storage query (the cursor,
    the versions within the overlap and any waiting events together) to an idle graph
    fetch; the alerts' own share is measured in test_graph_fetch.py."""
    graph = _graph(pipeline).with_settings(GRAPH_BASE_URL=pipeline.simulator.base_url)
    tenant = _tenant(pipeline, "Idle Incident Co")
    pipeline.sim.generate_graph(tenant.tenant_id, 4, PRODUCTS, alerts_per_incident=2,
                                age_seconds=900)
    assert graph.fetch(tenant).outcome == "success"
    graph.fetch(tenant)  # this worker's first idle run is kept in the history
    for _ in range(2):
        request = graph.fanned_out(tenant)
        with storage_requests() as seen:
            idle = graph.ingestor.run(request)
        assert (idle.outcome, idle.new, idle.changed, idle.api_calls) == (
            "success", 0, 0, 2)
        incidents = [s for s in seen if "/Incidents" in s]
        assert len(incidents) == 1, "\n".join(seen)
