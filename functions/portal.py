"""The MSSP portal's pages (HTML). Anonymous at the Functions level on purpose: App
Service Authentication sits in front in Azure, and shared.portal checks who may enter."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl

import azure.functions as func

from shared import services
from shared.portal.pages import Request, Response

bp = func.Blueprint()
MAX_FORM = 64_000


def _serve(req: func.HttpRequest, view: Callable[[Request], Response]) -> func.HttpResponse:
    body = req.get_body() or b""
    pairs: list[tuple[str, str]] = []
    if req.method == "POST" and len(body) <= MAX_FORM:
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    lists: dict[str, list[str]] = {}
    for name, value in pairs:
        lists.setdefault(name, []).append(value)
    request = Request(method=req.method, headers={k.lower(): v for k, v in req.headers.items()},
                      params=dict(req.params), route=dict(req.route_params), form=dict(pairs),
                      form_lists=lists)
    response = view(request)
    return func.HttpResponse(response.body, status_code=response.status,
                             headers=response.headers)


@bp.function_name("portal_overview")
@bp.route(route="portal", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_overview(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().overview)


@bp.function_name("portal_alerts")
@bp.route(route="portal/alerts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_alerts(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().alerts)


@bp.function_name("portal_incidents")
@bp.route(route="portal/incidents", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_incidents(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().incident_views.list_page)


@bp.function_name("portal_incident")
@bp.route(route="portal/incidents/{tenant_id}/{incident_id}", methods=["GET"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_incident(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().incident_views.incident_page)


@bp.function_name("portal_clusters")
@bp.route(route="portal/clusters", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_clusters(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().cluster_views.list_page)


@bp.function_name("portal_cluster")
@bp.route(route="portal/clusters/{kind}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_cluster(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().cluster_views.cluster_page)


@bp.function_name("portal_lookup")
@bp.route(route="portal/lookup", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_lookup(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().cluster_views.lookup_page)


@bp.function_name("portal_suppressions")
@bp.route(route="portal/suppressions", methods=["GET", "POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_suppressions(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().cluster_views.suppressions_page)


@bp.function_name("portal_suppression_remove")
@bp.route(route="portal/suppressions/remove", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_suppression_remove(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().cluster_views.suppression_remove)


@bp.function_name("portal_bulk")
@bp.route(route="portal/bulk", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_bulk(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().bulk_action)


@bp.function_name("portal_bulk_job")
@bp.route(route="portal/bulk/{job_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_bulk_job(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().bulk_job)


@bp.function_name("portal_tenant")
@bp.route(route="portal/tenants/{tenant_id}", methods=["GET"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_tenant(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().tenant)


@bp.function_name("portal_incident_action")
@bp.route(route="portal/incidents/{tenant_id}/{incident_id}/{action}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_incident_action(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().incident_views.incident_action)


@bp.function_name("portal_alert")
@bp.route(route="portal/tenants/{tenant_id}/alerts/{alert_id}", methods=["GET"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_alert(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().alert)


@bp.function_name("portal_alert_action")
@bp.route(route="portal/tenants/{tenant_id}/alerts/{alert_id}/{action}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_alert_action(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().alert_action)


@bp.function_name("portal_audit")
@bp.route(route="portal/audit", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_audit(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().audit)


@bp.function_name("portal_tenant_action")
@bp.route(route="portal/tenants/{tenant_id}/{action}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_tenant_action(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().tenant_action)


@bp.function_name("portal_rule_action")
@bp.route(route="portal/rules/{scope}/{rule_id}/{action}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_rule_action(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().rule_action)


@bp.function_name("portal_invitations")
@bp.route(route="portal/invitations", methods=["GET", "POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_invitations(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().invitations)


@bp.function_name("portal_invitation_action")
@bp.route(route="portal/invitations/{invitation_id}/{action}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def portal_invitation_action(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().invitation_action)


@bp.function_name("portal_outbox")
@bp.route(route="portal/outbox", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_outbox(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().outbox_page)


@bp.function_name("portal_login")
@bp.route(route="portal/login", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
def portal_login(req: func.HttpRequest) -> func.HttpResponse:
    return _serve(req, services.portal().login)
