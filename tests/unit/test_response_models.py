"""Every JSON answer of the HTTP API is written from a response model, and the OpenAPI
document's schema of it is generated from the same model: no hand-written response
schema is left, and what the models write validates against what the document says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
from pydantic import BaseModel

from shared.correlation import api as correlation_api
from shared.correlation.model import Cluster, Indicator, Sighting, Suppression, TenantReach
from shared.model import Tenant, TenantStatus
from shared.notify.rules import (
    GLOBAL,
    ChannelTestResult,
    RuleDeleted,
    RuleTestFailed,
    RuleTestRefused,
    RuleTestSent,
    RuleView,
    parse_rule,
)
from shared.ops.health import HealthReport
from shared.siem.outputs import OutputsReport
from shared.siem.pull import PullPage, item
from shared.storage.bulk_jobs import BulkItem, BulkJob, TenantWork
from shared.tenants.admin import TenantView
from shared.tenants.invitations import Invitation, InvitationView
from shared.triage.api import AuditEntryView, AuditPage, IncidentTriageResult, TriageResult
from shared.triage.bulk import JobStatus
from shared.triage.bulk_api import BulkAccepted, BulkJobView
from shared.triage.model import Actor, AuditEntry, Change
from shared.validation import ErrorBody
from shared.web import openapi
from tests.cluster_events import cluster_event

NOW = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)
TENANT = str(uuid.UUID(int=42))


def _instances() -> list[BaseModel]:
    """At least one realistic answer of each response model (with and without the fields
    that are sometimes left out)."""
    tenant = Tenant(TENANT, "Contoso", TenantStatus.PAUSED, "paused by the MSSP", NOW,
                    "eu", NOW, NOW, "HTTP 503", NOW, 2, throttled_until=NOW)
    invitation = Invitation("inv1", "Contoso", "admin@contoso.example", NOW + timedelta(7),
                            created_at=NOW)
    used = Invitation("inv2", "Fabrikam", "it@fabrikam.example", NOW, "fabrikam.example",
                      NOW, "used", TENANT, reconsent_for=TENANT)
    rule = parse_rule({"name": "High alerts", "recipients": ["soc@mssp.example"],
                       "min_severity": "High", "max_per_hour": 20}, GLOBAL)
    event = {"event_id": f"{TENANT}:a1:v1", "tenant": TENANT, "tenant_name": "Contoso",
             "change": "updated", "changed": {"status": ["New", "Resolved"]},
             "version": "2026-12-02T10:30:00.0000000Z", "feed_time": "2026-12-02T10:30:01Z",
             "alert_complete": True, "alert": {"id": "a1", "evidence": [{"sha1": None}]}}
    refusal = {"address": "bad@", "reason": "not an address"}
    output = {"name": "soc", "type": "syslog", "format": "cef", "lag_seconds": 4,
              "failures": 1, "last_error": "refused", "last_error_at": NOW.isoformat(),
              "retry_at": None, "last_success_at": None}
    healthy = {
        "status": "degraded", "versions": {"mssp-hub": "1.0", "python": "3.11.9"},
        "checks": {"queues": {"ok": True, "ms": 2.5}, "tables": {"ok": True, "ms": 1.0}},
        "ingestion": {"tenants": {"active": 3}, "failing_tenants": 1,
                      "poisoned_last_day": {"fetch-requests": 2}, "last_success_at": None,
                      "app_credential_error": {"reason": "AADSTS7000215",
                                               "at": NOW.isoformat()}},
        "siem_outputs": [{k: output[k] for k in ("name", "type", "lag_seconds", "failures",
                                                 "retry_at")}],
        "mail": {"transport": "smtp", "failing_since": None},
        "reasons": [{"code": "tenants_failing", "message": "1 active tenant(s) failed"}]}
    job = BulkJob("a" * 32, Actor("oid", "Ann", "entra"), Change(status="Resolved"), 3, 1,
                  "selection", NOW)
    work = TenantWork(job.job_id, TENANT, "Contoso", 3, done=1, failed=1, calls=2,
                      note="throttled by Defender: next call at 10:31:00 UTC")
    items = [BulkItem(TENANT, "da1", "done", at=NOW), BulkItem(TENANT, "da2", "failed", "404"),
             BulkItem(TENANT, "da3")]
    unhealthy = {"status": "unhealthy", "versions": {"mssp-hub": "1.0"},
                 "checks": {"settings": {"ok": False, "error": "app setting X: bad"}}}
    return [
        ErrorBody.one("no such tenant", "tenant_id", "not registered"),
        ErrorBody.model_validate({"error": "invalid rule", "errors": [
            {"field": "recipients.0", "message": "is not an address"}]}),
        TenantView.of(tenant), TenantView.of(Tenant(TENANT, "New")),
        TenantView.of(tenant, alerts_deleted=12),
        InvitationView.of(invitation, "https://hub.example/api/onboard/inv1"),
        InvitationView.of(used, "https://hub.example/api/onboard/inv2"),
        RuleView(rule), RuleDeleted(deleted=rule.id),
        RuleTestSent.model_validate({"sent": True, "to": ["soc@mssp.example"],
                                     "refused": [refusal]}),
        RuleTestRefused.model_validate({
            "sent": False, "error": "no valid recipient", "to": [], "refused": [refusal],
            "errors": [{"field": "recipients", "message": "bad@: not an address"}]}),
        RuleTestFailed(sent=False, error="550 mailbox unavailable"),
        ChannelTestResult(sent=True, channel="soc", webhook="https://hooks.slack.com/…/****"),
        ChannelTestResult(sent=False, channel="soc", webhook="https://hooks.slack.com/…/****",
                          error="429 rate limited: retry after 30 s", retry_after=30),
        item(event), item({"event_id": "e", "tenant": TENANT, "alert": {}}),
        item({**cluster_event().dump(), "feed_time": "2026-11-30T10:00:01Z"}),
        PullPage(items=[item(event)], continuation="eyJ2IjoxfQ", more=False),
        OutputsReport.model_validate({"outputs": [output]}),
        HealthReport.model_validate(healthy), HealthReport.model_validate(unhealthy),
        TriageResult(outcome="done", action_id="api:soar:k1", detail="200 OK",
                     repeated=False, alert={"id": "da1", "status": "Resolved",
                                            "comments": [{"comment": "<b>x</b>"}]}),
        TriageResult(outcome="throttled", action_id="a2", detail="429", repeated=True,
                     alert={}, retry_after=30),
        AuditPage(entries=[AuditEntryView.of(AuditEntry(
            "a1", NOW, Actor("soar", "soar", "api"), TENANT, "da1",
            {"status": "Resolved", "comment": "x"}, {"status": "New"},
            {"status": "Resolved"}, "done", "200 OK"))], continuation="0123~a1"),
        AuditPage(entries=[]),
        AuditPage(entries=[AuditEntryView.of(AuditEntry(
            "a3", NOW, Actor("oid", "Alice", "entra"), TENANT, "",
            {"status": "Resolved"}, {"status": "Active"}, {"status": "Resolved"}, "done",
            "200 OK", incident_id="17"))]),
        IncidentTriageResult(outcome="done", action_id="api:soar:k2", detail="200 OK",
                             repeated=False, incident={"id": "17", "status": "resolved"}),
        IncidentTriageResult(outcome="throttled", action_id="a4", detail="429",
                             repeated=False, incident={}, retry_after=5),
        openapi.ApiDocument.model_validate(openapi.document()),
        BulkAccepted(job_id=job.job_id, status_url=f"/api/alerts/bulk/{job.job_id}",
                     total=3, tenants=1),
        BulkJobView.of(JobStatus(job, [work], items, "a~next")),
        BulkJobView.of(JobStatus(job, [], [], "")),
        *_correlation(),
    ]


def _correlation() -> list[BaseModel]:
    api = correlation_api
    url = Indicator("url", "http://evil.example/<script>alert(1)</script>")
    cluster = Cluster(url, 2, [TenantReach(TENANT, "Contoso", "2026-12-01T00:00:00Z",
                                           "2026-12-02T00:00:00Z", ["da1"], 1, "High"),
                               TenantReach(str(uuid.UUID(int=7)), "Fabrikam",
                                           "2026-12-02T00:00:00Z", "2026-12-02T00:00:00Z")],
                      "2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z", 2, {"High": 2})
    seen = Sighting(url, TENANT, "Contoso", "da1", "2026-12-01T00:00:00Z", "High", "<b>x</b>")
    kept = api.SuppressionView.of(Suppression(url, "our own tool", "soar", NOW.isoformat()))
    return [api.ClusterPage(clusters=[api.ClusterView.of(cluster)], cursor="c1"),
            api.ClusterPage(clusters=[]), api.ClusterView.of(cluster),
            api.LookupPage(indicator=api.IndicatorView.of(url), sightings=[
                api.SightingView.of(seen), api.SightingView.of(Sighting(
                    url, TENANT, "Contoso", "da2", "2026-12-01T00:00:00Z"))], cursor="c"),
            kept, api.SuppressionList(suppressions=[kept]),
            api.SuppressionRemoved(indicator=api.IndicatorView.of(url), removed=False)]


def _component(model: type[BaseModel]) -> str:
    return openapi._reply_schema(model)[0]


def _json_schemas(doc: dict[str, Any]):
    for path, item_ in doc["paths"].items():
        for method, op in item_.items():
            if method == "parameters":
                continue
            for status, response in op["responses"].items():
                content = response.get("content", {})
                if "application/json" in content:
                    yield (path, method, status), content["application/json"]["schema"]


def test_every_json_answer_is_a_generated_model_schema():
    doc = openapi.document()
    generated = {_component(m) for m in openapi.REPLIES}
    used = set()
    for where, schema in _json_schemas(doc):
        if schema.get("type") == "array":
            assert set(schema) == {"type", "items"}, where
            schema = schema["items"]
        assert set(schema) == {"$ref"}, f"{where}: a hand-written schema"
        name = schema["$ref"].rsplit("/", 1)[1]
        assert name in generated, f"{where}: {name} is not a response model's"
        used.add(name)
    nested = {name for m in openapi.REPLIES for name in openapi._reply_schema(m)[2]}
    assert generated <= used | nested  # every response model answers, or is part of one
    schemas = doc["components"]["schemas"]
    for model in openapi.REPLIES:  # the component is the model's own schema
        name, schema, defs = openapi._reply_schema(model)
        assert schemas[name] == openapi._without_null_defaults(schema)
        for def_name, definition in defs.items():
            assert schemas[def_name] == openapi._without_null_defaults(definition)


def test_the_handlers_write_only_models():
    from functions import http

    with pytest.raises(AttributeError):  # a dict is not an answer: the model is
        http.json_response({"error": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize("answer", _instances(), ids=lambda a: type(a).__name__)
def test_what_each_model_writes_validates_against_the_document(answer):
    doc = openapi.document()
    root = {"$ref": f"#/components/schemas/{_component(type(answer))}",
            "components": doc["components"]}
    body = answer.model_dump(mode="json")
    jsonschema_rs.Draft202012Validator(root).validate(body)


def test_every_response_model_has_an_instance_above():
    assert {type(a) for a in _instances()} == set(openapi.REPLIES)


def test_fields_that_are_sometimes_left_out_are_left_out():
    tenant = Tenant(TENANT, "Contoso", created_at=NOW)
    assert "alerts_deleted" not in TenantView.of(tenant).model_dump(mode="json")
    assert TenantView.of(tenant, 0).model_dump(mode="json")["alerts_deleted"] == 0
    # times as the API wrote them before the models: isoformat, +00:00
    assert TenantView.of(tenant).model_dump(mode="json")["created_at"] == NOW.isoformat()
    unhealthy = HealthReport.model_validate({"status": "unhealthy", "versions": {},
                                             "checks": {"settings": {"ok": False,
                                                                     "error": "x"}}})
    assert unhealthy.model_dump(mode="json") == {
        "status": "unhealthy", "versions": {}, "checks": {"settings": {"ok": False,
                                                                       "error": "x"}}}
