"""Entra ID: discovery, the token endpoint (client credentials, authorization code), and
OpenID Connect sign-in with admin consent (/authorize, PKCE, RS256 ID tokens)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import jwt
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from devtools.simulator.http import entra_error, json_response
from devtools.simulator.tokens import (
    DEFENDER_AUDIENCES,
    GRAPH_AUDIENCE,
    US_GRAPH_AUDIENCE,
    AssertionRejected,
    Signer,
    resource_of,
    verify_assertion,
)
from devtools.simulator.world import App, AuthCode, Tenant, World

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599
CODE_LIFETIME = 600  # Entra's authorization codes last about ten minutes
GLOBAL_ADMIN_ROLE = "62e90394-69f5-4237-9190-012177145e10"  # wids: Global Administrator
AUTHORIZE_FIELDS = ("client_id", "response_type", "redirect_uri", "response_mode", "scope",
                    "state", "nonce", "code_challenge", "code_challenge_method", "prompt")
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
            # as Entra: endpoints under the alias, the issuer a template per tenant
            tid, path = "{tenantid}", tenant.lower()
        else:
            found = self.world.find_tenant(tenant)
            if found is None:
                return self._tenant_not_found(tenant)
            tid = path = found.id
        return json_response({
            "token_endpoint": f"{base}/{path}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/{path}/oauth2/v2.0/authorize",
            "issuer": f"{base}/{tid}/v2.0",
            "jwks_uri": f"{base}/{path}/discovery/v2.0/keys",
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
        alias = tenant_key.lower() in ("common", "consumers", "organizations")
        grant = form.get("grant_type")
        if grant == "authorization_code" and tenant_key.lower() != "consumers":
            return self._code_token(request, tenant_key)
        if alias:
            return entra_error(400, "invalid_request", 9001023,
                               "The grant type is not supported over the /common or "
                               "/consumers endpoints. Please use the /organizations or "
                               "tenant-specific endpoint.")
        tenant = world.find_tenant(tenant_key)
        if tenant is None:
            return self._tenant_not_found(tenant_key)
        if grant != "client_credentials":
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
        how = self._client_auth(form, app, endpoint)
        if isinstance(how, Response):
            return how
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
    def _client_auth(form: Any, app: App, endpoint: str) -> str | Response:
        """"1" (secret) or "2" (certificate) for valid client credentials; an error else."""
        if "client_assertion" in form:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                return entra_error(400, "invalid_request", 50027,
                                   "client_assertion_type is missing or not supported.")
            try:
                verify_assertion(form["client_assertion"], app.certificates, app.client_id,
                                 endpoint, time.time())  # the client's clock, not ours
            except AssertionRejected as exc:
                return entra_error(401, "invalid_client", exc.code, str(exc))
            return "2"
        if "client_secret" in form:
            if form["client_secret"] not in app.secrets:
                return entra_error(401, "invalid_client", 7000215,
                                   "Invalid client secret provided. Ensure the secret being "
                                   "sent in the request is the client secret value, not the "
                                   "client secret ID, for a secret added to app "
                                   f"'{app.client_id}'.")
            return "1"
        return entra_error(401, "invalid_client", 7000218,
                           "The request body must contain the following parameter: "
                           "'client_assertion' or 'client_secret'.")

    @staticmethod
    def _roles(tenant: Tenant, client_id: str, audience: str,
               permissions: dict[str, list[str]]) -> list[str]:
        granted = tenant.consents.get(client_id)
        if granted is None:  # the app's home tenant: its own permissions, admin-approved
            granted = permissions
        key = DEFENDER_AUDIENCES[0] if audience in DEFENDER_AUDIENCES else audience
        if audience == US_GRAPH_AUDIENCE:  # one app permission, whichever cloud's host
            key = GRAPH_AUDIENCE
        return list(granted.get(key, []))

    # OpenID Connect sign-in: authorization code + PKCE --------------------------------
    def authorize(self, request: Request, tenant: str) -> Response:
        """The sign-in and consent page; on accept, consent for the app and a code."""
        world = self.world
        args = request.form if request.method == "POST" else request.args
        fixed = None
        if tenant.lower() == "consumers":
            return _page("error.html", 400, code=9002331, message="This application is "
                         "configured for work and school accounts only.")
        if tenant.lower() not in ("organizations", "common"):
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
        state, scope = args.get("state"), args.get("scope") or ""
        if args.get("response_type") != "code":
            return self._back(redirect_uri, state, error="unsupported_response_type",
                              error_description="AADSTS700054: response_type "
                              f"'{args.get('response_type', '')}' is not enabled for the "
                              "application.")
        if not scope:
            return self._back(redirect_uri, state, error="invalid_request",
                              error_description="AADSTS900144: The request body must contain "
                                                "the following parameter: 'scope'.")
        resources = [resource_of(s) for s in scope.split() if s.endswith("/.default")]
        if None in resources or any(s not in ("openid", "profile", "email", "offline_access")
                                    and not s.endswith("/.default") for s in scope.split()):
            return self._back(redirect_uri, state, error="invalid_scope",
                              error_description=f"AADSTS70011: The provided value for the "
                                                f"input parameter 'scope' is not valid. The "
                                                f"scope {scope} is not valid.")
        challenge, method = args.get("code_challenge"), args.get("code_challenge_method")
        if challenge and (method or "plain") not in ("S256", "plain"):
            return self._back(redirect_uri, state, error="invalid_request",
                              error_description="AADSTS501491: Invalid code_challenge_method."
                              )
        if challenge and not 43 <= len(challenge) <= 128:
            return self._back(redirect_uri, state, error="invalid_request",
                              error_description="AADSTS501491: Invalid size of "
                                                "Code_Challenge parameter.")
        if request.method == "GET":
            keys = {DEFENDER_AUDIENCES[0] if r in DEFENDER_AUDIENCES else r for r in resources}
            return _page("consent.html", app=app, tenant=fixed, action=request.path,
                         hidden=[(k, args[k]) for k in AUTHORIZE_FIELDS if args.get(k)],
                         tenants=sorted(world.tenants.values(), key=lambda t: t.name),
                         permissions=[
                             ("WindowsDefenderATP" if k in DEFENDER_AUDIENCES else k,
                              app.permissions.get(k, [])) for k in sorted(keys)])
        if request.form.get("decision") != "accept":
            return self._back(redirect_uri, state, error="access_denied",
                              error_description="AADSTS65004: User declined to consent to "
                                                "access the app.")
        chosen = fixed or world.find_tenant(request.form.get("signed_in_tenant", ""))
        if chosen is None:
            return _page("error.html", 400, code=90002, message="Choose the organization "
                         "to sign in to.")
        if resources:
            world.grant(chosen, app.client_id)
        code = secrets.token_urlsafe(48)
        with world.lock:
            world.codes[code] = AuthCode(
                client_id=app.client_id, redirect_uri=redirect_uri, tenant_id=chosen.id,
                scope=scope, nonce=args.get("nonce"), code_challenge=challenge,
                code_challenge_method=method or ("plain" if challenge else None),
                user=f"admin@{chosen.domain}", expires_at=world.clock.now() + CODE_LIFETIME)
        return self._back(redirect_uri, state, code=code, session_state=str(uuid.uuid4()))

    def _code_token(self, request: Request, tenant_key: str) -> Response:
        world, form = self.world, request.form
        for required in ("client_id", "code", "redirect_uri"):
            if not form.get(required):
                return entra_error(400, "invalid_request", 900144,
                                   "The request body must contain the following parameter: "
                                   f"'{required}'.")
        app = world.apps.get(form["client_id"].lower())
        if app is None:
            return entra_error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{form['client_id']}' was not "
                               "found in the directory.")
        endpoint = f"{request.host_url.rstrip('/')}/{tenant_key}/oauth2/v2.0/token"
        how = self._client_auth(form, app, endpoint)
        if isinstance(how, Response):
            return how
        with world.lock:
            grant = world.codes.get(form["code"])
            if grant is None:
                return entra_error(400, "invalid_grant", 9002313,
                                   "Invalid request. Request is malformed or invalid.")
            if grant.redeemed:
                return entra_error(400, "invalid_grant", 54005,
                                   "OAuth2 Authorization code was already redeemed, please "
                                   "retry with a new valid code or use an existing refresh "
                                   "token.")
            if grant.expires_at <= world.clock.now():
                return entra_error(400, "invalid_grant", 70008,
                                   "The provided authorization code or refresh token has "
                                   "expired due to inactivity. Send a new interactive "
                                   "authorization request for this user and resource.")
            fixed = world.find_tenant(tenant_key)
            if grant.client_id != app.client_id or (
                    tenant_key.lower() not in ("organizations", "common")
                    and (fixed is None or fixed.id != grant.tenant_id)):
                return entra_error(400, "invalid_grant", 70000,
                                   "Provided grant is invalid or malformed.")
            if form["redirect_uri"] != grant.redirect_uri:
                return entra_error(400, "invalid_grant", 500112,
                                   f"The reply address '{form['redirect_uri']}' does not "
                                   f"match the reply address '{grant.redirect_uri}' provided "
                                   "when requesting Authorization code.")
            if grant.code_challenge and not _pkce_ok(grant, form.get("code_verifier", "")):
                return entra_error(400, "invalid_grant", 50148,
                                   "The code_verifier does not match the code_challenge "
                                   "supplied in the authorization request for PKCE.")
            grant.redeemed = True
            tamper, world.id_token_tamper = world.id_token_tamper, None
        tenant = world.tenants[grant.tenant_id]
        now = int(time.time())  # ID tokens follow the wall clock, as the app checks them
        oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant.id}/{grant.user}"))
        body: dict[str, Any] = {"token_type": "Bearer", "scope": grant.scope,
                                "expires_in": TOKEN_LIFETIME,
                                "ext_expires_in": TOKEN_LIFETIME}
        resource = next((resource_of(s) for s in grant.scope.split()
                         if s.endswith("/.default")), None)
        if resource:
            body["access_token"] = world.signer.sign({
                "aud": resource, "iss": f"https://sts.windows.net/{tenant.id}/", "iat": now,
                "nbf": now, "exp": now + TOKEN_LIFETIME, "appid": app.client_id, "oid": oid,
                "sub": oid, "tid": tenant.id, "upn": grant.user, "scp": "user_impersonation",
                "ver": "1.0"})
        if "openid" in grant.scope.split():
            claims = {"aud": app.client_id, "iss": f"{request.host_url.rstrip('/')}/"
                      f"{tenant.id}/v2.0", "iat": now, "nbf": now,
                      "exp": now + TOKEN_LIFETIME, "name": f"Administrator of {tenant.name}",
                      "oid": oid, "sub": oid, "preferred_username": grant.user,
                      "tid": tenant.id, "ver": "2.0", "wids": [GLOBAL_ADMIN_ROLE]}
            if grant.nonce is not None:
                claims["nonce"] = grant.nonce
            body["id_token"] = self._id_token(claims, tamper)
        return json_response(body, headers={"Cache-Control": "no-store, no-cache"})

    def _id_token(self, claims: dict[str, Any], tamper: dict[str, Any] | None) -> str:
        """Signed by the current key, unless a test asked for a changed one."""
        if not tamper:
            return self.world.signer.sign(claims)
        claims = {**claims, **tamper.get("claims", {})}
        for name in tamper.get("drop", []):
            claims.pop(name, None)
        if tamper.get("foreign_key"):  # a key the JWKS never published
            stranger = Signer()
            if tamper["foreign_key"] == "same_kid":
                return jwt.encode(claims, stranger.key, algorithm="RS256",
                                  headers={"kid": self.world.signer.kid, "typ": "JWT"})
            return stranger.sign(claims)
        return self.world.signer.sign(claims)

    @staticmethod
    def _back(redirect_uri: str, state: str | None, **params: str) -> Response:
        if state is not None:
            params["state"] = state
        joiner = "&" if "?" in redirect_uri else "?"
        return redirect(redirect_uri + joiner + urlencode(params), code=302)


def _pkce_ok(grant: AuthCode, verifier: str) -> bool:
    if not 43 <= len(verifier) <= 128:
        return False
    if grant.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        verifier = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return secrets.compare_digest(verifier, grant.code_challenge or "")
