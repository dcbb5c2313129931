"""The MSSP's admin API (function key): invitations and tenants. Errors are JSON that
name the bad field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func

from functions.http import invalid, json_response, refused
from shared import services, validation
from shared.model import Tenant, parse_tenant_id
from shared.tenants.admin import Conflict, Offboard, TenantView
from shared.tenants.invitations import InvitationView, parse_invitation, parse_reconsent
from shared.validation import NoBody, ValidationError

bp = func.Blueprint()


def _body(req: func.HttpRequest) -> Any:
    """The decoded JSON body (size and depth limited); no body is None."""
    return validation.decode_json(req.get_body())


def _with_tenant(req: func.HttpRequest, action: Callable[[Tenant], func.HttpResponse]
                 ) -> func.HttpResponse:
    try:
        tenant_id = parse_tenant_id(req.route_params.get("tenant_id", ""))
    except ValueError:
        return invalid(ValidationError([{"field": "tenant_id", "message": "must be a GUID"}]))
    tenant = services.tenant_admin().tenants.get(tenant_id)
    if tenant is None:
        return refused(404, "no such tenant", "tenant_id", "not registered")
    try:
        return action(tenant)
    except ValidationError as exc:
        return invalid(exc)
    except Conflict as exc:
        return refused(409, str(exc), "status", str(exc))


@bp.function_name("invitations_create")
@bp.route(route="invitations", methods=["POST"])
def invitations_create(req: func.HttpRequest) -> func.HttpResponse:
    service = services.onboarding()
    try:
        invitation = service.create_invitation(parse_invitation(_body(req)))
    except ValidationError as exc:  # triage access without a triage app, too
        return invalid(exc)
    return json_response(InvitationView.of(invitation, service.link(invitation.id)), 201)


@bp.function_name("invitations_list")
@bp.route(route="invitations", methods=["GET"])
def invitations_list(req: func.HttpRequest) -> func.HttpResponse:
    service = services.onboarding()
    return json_response([InvitationView.of(i, service.link(i.id))
                          for i in service.list_invitations()])


@bp.function_name("invitations_revoke")
@bp.route(route="invitations/{invitation_id}", methods=["DELETE"])
def invitations_revoke(req: func.HttpRequest) -> func.HttpResponse:
    try:
        validation.body(NoBody, req.get_body())
    except ValidationError as exc:
        return invalid(exc)
    service = services.onboarding()
    invitation = service.revoke_invitation(req.route_params.get("invitation_id", ""))
    if invitation is None:
        return refused(404, "no such invitation", "invitation_id", "not found")
    return json_response(InvitationView.of(invitation, service.link(invitation.id)))


@bp.function_name("tenants_list")
@bp.route(route="tenants", methods=["GET"])
def tenants_list(req: func.HttpRequest) -> func.HttpResponse:
    return json_response([TenantView.of(t)
                          for t in services.tenant_admin().tenants.failing_first()])


@bp.function_name("tenants_get")
@bp.route(route="tenants/{tenant_id}", methods=["GET"])
def tenants_get(req: func.HttpRequest) -> func.HttpResponse:
    return _with_tenant(req, lambda t: json_response(TenantView.of(t)))


@bp.function_name("tenants_update")
@bp.route(route="tenants/{tenant_id}", methods=["PATCH"])
def tenants_update(req: func.HttpRequest) -> func.HttpResponse:
    return _with_tenant(req, lambda t: json_response(TenantView.of(
        services.tenant_admin().update(t, _body(req)))))


@bp.function_name("tenants_reconsent")
@bp.route(route="tenants/{tenant_id}/invitations", methods=["POST"])
def tenants_reconsent(req: func.HttpRequest) -> func.HttpResponse:
    """A re-consent invitation: how a known tenant that is not active comes back, or an
    active one changes its access (read-only or triage)."""
    service = services.onboarding()

    def make(tenant: Tenant) -> func.HttpResponse:
        values = parse_reconsent(_body(req))
        try:
            invitation = service.create_reconsent(tenant, values)
        except ValidationError:
            raise
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        return json_response(InvitationView.of(invitation, service.link(invitation.id)), 201)

    return _with_tenant(req, make)


@bp.function_name("tenants_action")
@bp.route(route="tenants/{tenant_id}/{action}", methods=["POST"])
def tenants_action(req: func.HttpRequest) -> func.HttpResponse:
    admin = services.tenant_admin()
    action = req.route_params.get("action", "")

    def run(tenant: Tenant) -> func.HttpResponse:
        if action not in ("pause", "resume", "offboard", "move-to-graph"):
            raise ValidationError([{"field": "action", "message": "one of pause, resume, "
                                    "offboard, move-to-graph"}])
        if action == "move-to-graph":  # probed first; 409 says to re-consent if needed
            validation.check(NoBody, _body(req))
            return json_response(TenantView.of(services.source_move().to_graph(tenant)))
        if action == "offboard":
            delete = validation.check(Offboard, _body(req)).delete_alerts
            tenant, deleted = admin.offboard(tenant, delete)
            return json_response(TenantView.of(tenant, alerts_deleted=deleted))
        validation.check(NoBody, _body(req))
        change = admin.pause if action == "pause" else admin.resume
        return json_response(TenantView.of(change(tenant)))

    return _with_tenant(req, run)
