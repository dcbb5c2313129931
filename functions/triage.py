"""Triage through the keyed API: change one alert in the customer's Defender, read the
audit trail. The logic is shared/triage/; errors are JSON naming the field."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import invalid, json_response, refused
from shared import services, validation
from shared.logsafe import clean
from shared.triage import api
from shared.triage.service import UnknownTenant
from shared.validation import ValidationError

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.triage")


@bp.function_name("triage_alert_update")
@bp.route(route="tenants/{tenant_id}/alerts/{alert_id}", methods=["PATCH"])
def triage_alert_update(req: func.HttpRequest) -> func.HttpResponse:
    service = services.triage()
    actor = api.api_actor(service.settings.api_keys, req.headers.get("X-Api-Key"))
    if actor is None:
        return json_response(api.UNAUTHORIZED, 401)
    try:
        tenant_id, alert_id = api.target(req.route_params.get("tenant_id", ""),
                                         req.route_params.get("alert_id", ""))
        change, seen, action_id = api.request_of(validation.decode_json(req.get_body()),
                                                 req.headers, actor)
    except ValidationError as exc:
        return invalid(exc)
    try:
        applied = service.apply(actor, tenant_id, alert_id, change, seen_version=seen,
                                action_id=action_id)
    except UnknownTenant:
        return refused(404, "no such tenant", "tenant_id", "not registered")
    log.info("triage by key %s on tenant %s: %s", clean(actor.name), tenant_id,
             applied.outcome)
    status, reply, headers = api.answer(applied)
    return json_response(reply, status, headers)


@bp.function_name("triage_incident_update")
@bp.route(route="tenants/{tenant_id}/incidents/{incident_id}", methods=["PATCH"])
def triage_incident_update(req: func.HttpRequest) -> func.HttpResponse:
    actor = api.api_actor(services.get_settings().api_keys, req.headers.get("X-Api-Key"))
    if actor is None:
        return json_response(api.UNAUTHORIZED, 401)
    try:
        tenant_id, incident_id = api.incident_target(
            req.route_params.get("tenant_id", ""), req.route_params.get("incident_id", ""))
        change, seen, action_id = api.request_of(validation.decode_json(req.get_body()),
                                                 req.headers, actor, api.IncidentChange)
    except ValidationError as exc:
        return invalid(exc)
    try:
        applied = services.incident_triage().apply(actor, tenant_id, incident_id, change,
                                                   seen_version=seen, action_id=action_id)
    except UnknownTenant:
        return refused(404, "no such tenant", "tenant_id", "not registered")
    log.info("incident triage by key %s on tenant %s: %s", clean(actor.name), tenant_id,
             applied.outcome)
    status, reply, headers = api.incident_answer(applied)
    return json_response(reply, status, headers)


@bp.function_name("triage_audit")
@bp.route(route="audit", methods=["GET"])
def triage_audit(req: func.HttpRequest) -> func.HttpResponse:
    try:
        query = api.audit_query(req.params)
        entries, token = services.triage().audit.page(**query)
    except ValidationError as exc:
        return invalid(exc)
    except ValueError:
        return refused(400, "invalid request", "continuation", "not a token this API gave")
    return json_response(api.AuditPage(entries=[api.AuditEntryView.of(e) for e in entries],
                                       continuation=token))


@bp.function_name("triage_alert_audit")
@bp.route(route="tenants/{tenant_id}/alerts/{alert_id}/audit", methods=["GET"])
def triage_alert_audit(req: func.HttpRequest) -> func.HttpResponse:
    try:
        tenant_id, alert_id = api.target(req.route_params.get("tenant_id", ""),
                                         req.route_params.get("alert_id", ""))
    except ValidationError as exc:
        return invalid(exc)
    entries = services.triage().audit.for_alert(tenant_id, alert_id)
    return json_response(api.AuditPage(entries=[api.AuditEntryView.of(e) for e in entries]))
