"""GET /api/health: 200 healthy or degraded (with reasons), 503 unhealthy (storage down).

Anonymous, as App Service health checks and uptime probes call it without keys; it
shows outcomes and versions, never a setting's value.
"""

from __future__ import annotations

import azure.functions as func

from functions.http import json_response
from shared.ops import health
from shared.web.openapi import ApiDocument
from shared.web.openapi import document as openapi_document

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    healthy, body = health.report()
    return json_response(health.HealthReport.model_validate(body), 200 if healthy else 503)


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(ApiDocument.model_validate(openapi_document()))
