"""Entra ID: discovery, the client-credentials token endpoint, v2 admin consent."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from devtools.simulator.http import entra_error, json_response
from devtools.simulator.tokens import (
    DEFENDER_AUDIENCES,
    AssertionRejected,
    resource_of,
    verify_assertion,
)
from devtools.simulator.world import Tenant, World

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(_TEMPLATES.get_template(template).render(**context), status=status,
                    content_type="text/html; charset=utf-8")


class Entra:
    def __init__(self, world: World) -> None:
        self.world = world

    # discovery --------------------------------------------------------------------------
    def openid_configuration(self, request: Request, tenant: str) -> Response:
        base = request.host_url.rstrip("/")
        if tenant.lower() in ("common", "organizations", "consumers"):
            tid = "{tenantid}"
        else:
            found = self.world.find_tenant(tenant)
            if found is None:
                return self._tenant_not_found(tenant)
            tid = found.id
        return json_response({
            "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
            "issuer": f"{base}/{tid}/v2.0",
            "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token",
                                         "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        })

    def keys(self, request: Request, tenant: str) -> Response:
        return json_response(self.world.signer.jwks())

    def _tenant_not_found(self, tenant: str) -> Response:
        return entra_error(400, "invalid_tenant", 90002,
                           f"Tenant '{tenant}' not found. Check to make sure you have the "
                           "correct tenant ID and are signing into the correct cloud. Check "
                           "with your subscription administrator, this may happen if there "
                           "are no active subscriptions for the tenant.")

    # tokens -----------------------------------------------------------------------------
    def token(self, request: Request, tenant: str) -> Response:
        world = self.world
        response = self._token(request, tenant)
        with world.lock:
            world.counters["token_errors" if response.status_code != 200
                           else "tokens_issued"] += 1
        return response

    def _token(self, request: Request, tenant_key: str) -> Response:
        world, form = self.world, request.form
        if tenant_key.lower() in ("common", "consumers", "organizations"):
            return entra_error(400, "invalid_request", 9001023,
                               "The grant type is not supported over the /common or "
                               "/consumers endpoints. Please use the /organizations or "
                               "tenant-specific endpoint.")
        tenant = world.find_tenant(tenant_key)
        if tenant is None:
            return self._tenant_not_found(tenant_key)
        if form.get("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003,
                               "The app requested an unsupported grant type "
                               f"'{form.get('grant_type', '')}'.")
        for required in ("client_id", "scope"):
            if not form.get(required):
                return entra_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: "
                                   f"'{required}'.")
        client_id = form["client_id"].lower()
        app = world.apps.get(client_id)
        if app is None or (tenant.id != app.home_tenant and client_id not in tenant.consents):
            return entra_error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{form['client_id']}' was not "
                               f"found in the directory '{tenant.name}'. This can happen if the "
                               "application has not been installed by the administrator of "
                               "the tenant or consented to by any user in the tenant. You may "
                               "have sent your authentication request to the wrong tenant.")
        endpoint = f"{request.host_url.rstrip('/')}/{tenant.id}/oauth2/v2.0/token"
        if "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return entra_error(400, "invalid_request", 50027,
                                   "client_assertion_type is missing or not supported.")
            try:
                verify_assertion(form["client_assertion"], app.certificates, client_id,
                                 endpoint, time.time())  # the client's clock, not ours
            except AssertionRejected as exc:
                return entra_error(401, "invalid_client", exc.code, str(exc))
            how = "2"
        elif "client_secret" in form:
            if form["client_secret"] not in app.secrets:
                return entra_error(401, "invalid_client", 7000215,
                                   "Invalid client secret provided. Ensure the secret being "
                                   "sent in the request is the client secret value, not the "
                                   "client secret ID, for a secret added to app "
                                   f"'{client_id}'.")
            how = "1"
        else:
            return entra_error(401, "invalid_client", 7000218,
                               "The request body must contain the following parameter: "
                               "'client_assertion' or 'client_secret'.")
        audience = resource_of(form["scope"])
        if audience is None:
            return entra_error(400, "invalid_scope", 70011,
                               f"The provided value for the input parameter 'scope' is not "
                               f"valid. The scope {form['scope']} is not valid.")
        if audience in DEFENDER_AUDIENCES and tenant.defender == "none":
            return entra_error(400, "invalid_resource", 500011,
                               f"The resource principal named {audience} was not found in the "
                               f"tenant named {tenant.name}. This can happen if the application "
                               "has not been installed by the administrator of the tenant or "
                               "consented to by any user in the tenant. You might have sent "
                               "your authentication request to the wrong tenant.")
        roles = self._roles(tenant, app.client_id, audience, app.permissions)
        now = int(world.clock.now())
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{tenant.id}/",
                  "iat": now, "nbf": now, "exp": now + TOKEN_LIFETIME, "appid": client_id,
                  "appidacr": how, "idp": f"https://sts.windows.net/{tenant.id}/",
                  "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.id}/{client_id}")),
                  "roles": roles, "tid": tenant.id, "uti": uuid.uuid4().hex, "ver": "1.0"}
        claims["sub"] = claims["oid"]
        with world.lock:
            world.tokens_by_tenant[tenant.id] += 1
        return json_response({"token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                              "ext_expires_in": TOKEN_LIFETIME,
                              "access_token": world.signer.sign(claims)},
                             headers={"Cache-Control": "no-store, no-cache"})

    @staticmethod
    def _roles(tenant: Tenant, client_id: str, audience: str,
               permissions: dict[str, list[str]]) -> list[str]:
        granted = tenant.consents.get(client_id)
        if granted is None:  # the app's home tenant: its own permissions, admin-approved
            granted = permissions
        key = DEFENDER_AUDIENCES[0] if audience in DEFENDER_AUDIENCES else audience
        return list(granted.get(key, []))

    # admin consent ----------------------------------------------------------------------
    def admin_consent(self, request: Request, tenant: str) -> Response:
        world = self.world
        args = request.form if request.method == "POST" else request.args
        if tenant.lower() == "common":
            return _page("error.html", 400, code=90023, message="Admin consent needs a tenant "
                         "or 'organizations', not 'common'.")
        fixed = None
        if tenant.lower() != "organizations":
            fixed = world.find_tenant(tenant)
            if fixed is None:
                return _page("error.html", 400, code=90002, message=f"Tenant '{tenant}' not "
                             "found.")
        client_id = (args.get("client_id") or "").lower()
        app = world.apps.get(client_id)
        if app is None:
            return _page("error.html", 400, code=700016, message="Application with "
                         f"identifier '{args.get('client_id', '')}' was not found in the "
                         "directory.")
        redirect_uri = args.get("redirect_uri") or ""
        if redirect_uri not in app.redirect_uris:
            return _page("error.html", 400, code=50011, message=f"The redirect URI "
                         f"'{redirect_uri}' specified in the request does not match the "
                         f"redirect URIs configured for the application '{app.client_id}'.")
        state = args.get("state")
        scope = args.get("scope")
        if not scope:
            return self._back(redirect_uri, state, error="invalid_request",
                              error_description="AADSTS900144: The request body must contain "
                                                "the following parameter: 'scope'.")
        audience = resource_of(scope)
        if audience is None:
            return self._back(redirect_uri, state, error="invalid_request",
                              error_description=f"AADSTS70011: The provided value for the "
                                                f"input parameter 'scope' is not valid. The "
                                                f"scope {scope} is not valid.")
        if request.method == "GET":
            key = DEFENDER_AUDIENCES[0] if audience in DEFENDER_AUDIENCES else audience
            return _page("consent.html", app=app, client_id=app.client_id,
                         redirect_uri=redirect_uri, scope=scope, state=state, tenant=fixed,
                         tenants=sorted(world.tenants.values(), key=lambda t: t.name),
                         permissions=[("WindowsDefenderATP" if key in DEFENDER_AUDIENCES
                                       else key, app.permissions.get(key, []))],
                         action=request.path)
        if request.form.get("decision") != "accept":
            return self._back(redirect_uri, state, error="access_denied",
                              error_description="AADSTS65004: User declined to consent to "
                                                "access the app.")
        chosen = fixed or world.find_tenant(request.form.get("signed_in_tenant", ""))
        if chosen is None:
            return _page("error.html", 400, code=90002, message="Tenant not found.")
        world.grant(chosen, app.client_id)
        return self._back(redirect_uri, state, admin_consent="True", tenant=chosen.id,
                          scope=scope)

    @staticmethod
    def _back(redirect_uri: str, state: str | None, **params: str) -> Response:
        if state is not None:
            params["state"] = state
        joiner = "&" if "?" in redirect_uri else "?"
        return redirect(redirect_uri + joiner + urlencode(params), code=302)
