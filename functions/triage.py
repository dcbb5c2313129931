"""Triage through the keyed API: change one alert in the customer's Defender, read the
audit trail. The logic is shared/triage/; errors are JSON naming the field."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions.http import invalid, json_response, refused
from shared import services, validation
from shared.logsafe import clean
from shared.triage import api
from shared.triage.incident_service import IncidentTriage
from shared.triage.service import Applied, TriageService, UnknownTenant
from shared.validation import ValidationError

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.triage")


@bp.function_name("triage_alert_update")
@bp.route(route="tenants/{tenant_id}/alerts/{alert_id}", methods=["PATCH"])
def triage_alert_update(req: func.HttpRequest) -> func.HttpResponse:
    return _patch(req, "alert_id", api.target, api.AlertChange, services.triage,
                  api.answer, "triage")


@bp.function_name("triage_incident_update")
@bp.route(route="tenants/{tenant_id}/incidents/{incident_id}", methods=["PATCH"])
def triage_incident_update(req: func.HttpRequest) -> func.HttpResponse:
    return _patch(req, "incident_id", api.incident_target, api.IncidentChange,
                  services.incident_triage, api.incident_answer, "incident triage")


def _patch(req: func.HttpRequest, item: str, target: Callable[[str, str], tuple[str, str]],
           model: type[api.AlertChange] | type[api.IncidentChange],
           service: Callable[[], TriageService | IncidentTriage],
           answer: Callable[[Applied], tuple[int, Any, dict[str, str]]],
           what: str) -> func.HttpResponse:
    """A keyed PATCH of one alert or incident (`item`: the route's id parameter)."""
    actor = api.api_actor(services.get_settings().api_keys, req.headers.get("X-Api-Key"))
    if actor is None:
        return json_response(api.UNAUTHORIZED, 401)
    try:
        tenant_id, item_id = target(req.route_params.get("tenant_id", ""),
                                    req.route_params.get(item, ""))
        change, seen, action_id = api.request_of(validation.decode_json(req.get_body()),
                                                 req.headers, actor, model)
    except ValidationError as exc:
        return invalid(exc)
    try:
        applied = service().apply(actor, tenant_id, item_id, change, seen_version=seen,
                                  action_id=action_id)
    except UnknownTenant:
        return refused(404, "no such tenant", "tenant_id", "not registered")
    log.info("%s by key %s on tenant %s: %s", what, clean(actor.name), tenant_id,
             applied.outcome)
    status, reply, headers = answer(applied)
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
