"""Customer-facing onboarding pages: the invitation link and Entra's consent callback."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from shared import services
from shared.tenants.invitations import Invitation
from shared.web.pages import SECURITY_HEADERS, csp, render

bp = func.Blueprint()


def _page(template: str, status: int = 200, form_targets: str = "'self'",
          **context: object) -> func.HttpResponse:
    settings = services.onboarding().cfg
    return func.HttpResponse(render(template, mssp_name=settings.mssp_name, **context),
                             status_code=status, mimetype="text/html", charset="utf-8",
                             headers={**SECURITY_HEADERS, "Content-Security-Policy":
                                      csp(form_targets)})


def _gone() -> func.HttpResponse:
    return _page("outcome.html", 404, heading="This invitation is not valid",
                 message="The link is wrong, has expired, or was already used.",
                 next_step="Ask your security provider for a new invitation.", detail="",
                 tone="bad")


def _open_invitation(req: func.HttpRequest) -> Invitation | None:
    service = services.onboarding()
    invitation = service.invitation(req.route_params.get("invitation_id", ""))
    return invitation if invitation and invitation.usable(service.now()) else None


@bp.function_name("onboard_page")
@bp.route(route="onboard/{invitation_id}", methods=["GET"],
          auth_level=func.AuthLevel.ANONYMOUS)
def onboard_page(req: func.HttpRequest) -> func.HttpResponse:
    service = services.onboarding()
    invitation = _open_invitation(req)
    if invitation is None:
        return _gone()
    permission, client_id = service.terms(invitation)
    return _page("invitation.html", invitation=invitation, permission=permission,
                 client_id=client_id,
                 action=f"/api/onboard/{invitation.id}",
                 # the form's redirect goes on to Entra: CSP form-action covers redirects
                 form_targets=f"'self' {service.settings.identity.browser_authority}")


@bp.function_name("onboard_start")
@bp.route(route="onboard/{invitation_id}", methods=["POST"],
          auth_level=func.AuthLevel.ANONYMOUS)
def onboard_start(req: func.HttpRequest) -> func.HttpResponse:
    invitation = _open_invitation(req)
    if invitation is None:
        return _gone()
    return func.HttpResponse(status_code=303, headers={
        "Location": services.onboarding().start(invitation), **SECURITY_HEADERS})


@bp.function_name("consent_callback")
@bp.route(route="consent/callback", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def consent_callback(req: func.HttpRequest) -> func.HttpResponse:
    # from the raw URL: the host joins repeated keys, and a repeat must be refused
    params = parse_qs(urlsplit(req.url).query, keep_blank_values=True)
    outcome = services.onboarding().callback(params)
    return _page("outcome.html", outcome.status, heading=outcome.heading,
                 message=outcome.message, next_step=outcome.next_step, detail=outcome.detail,
                 tone=outcome.tone)
