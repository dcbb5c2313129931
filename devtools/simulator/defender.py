"""The Defender for Endpoint alerts API, per tenant by the caller's token."""

from __future__ import annotations

from typing import Any

import jwt
import orjson
from werkzeug.wrappers import Request, Response

from devtools.simulator import alert_updates, faults
from devtools.simulator.http import (
    defender_error,
    graph_error,
    gzipped,
    json_response,
    streamed,
)
from devtools.simulator.odata import ODataError, integer_option, parse_filter, parse_orderby
from devtools.simulator.tokens import DEFENDER_AUDIENCES, GRAPH_AUDIENCE
from devtools.simulator.world import Fault, StoredAlert, Tenant, World

MAX_TOP = 10_000
# the pages spell the write permission two ways; a token carries the one granted
WRITE_ROLES = {"Alert.ReadWrite.All", "Alerts.ReadWrite.All"}
READ_ROLES = {"Alert.Read.All", *WRITE_ROLES}


class Defender:
    def __init__(self, world: World) -> None:
        self.world = world

    def _caller(self, request: Request, write: bool = False) -> tuple[Tenant, str] | Response:
        """(tenant, app) for a valid token, or the 401/403 Defender would answer (a
        write needs Alert.ReadWrite.All: a read-only grant is 403)."""
        world = self.world
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return defender_error(401, "Unauthorized", "Authorization header is missing or "
                                  "is not a Bearer token.")
        try:
            claims = world.signer.verify(auth[7:], DEFENDER_AUDIENCES, world.clock.now())
        except jwt.ExpiredSignatureError:
            return defender_error(401, "Unauthorized", "The access token has expired.")
        except jwt.InvalidTokenError:
            return defender_error(401, "Unauthorized", "The access token is invalid.")
        tenant = world.find_tenant(claims.get("tid", ""))
        app = claims.get("appid", "")
        if tenant is None:
            return defender_error(401, "Unauthorized", "Unknown tenant.")
        revoked = tenant.revoked_at.get(app)
        if revoked is not None and claims.get("iat", 0) <= revoked:
            return defender_error(401, "Unauthorized", "The application's access to this "
                                  "tenant was revoked.")
        if tenant.defender == "disabled":
            return defender_error(403, "DisabledFeature", "Microsoft Defender for Endpoint "
                                  "is not enabled for this tenant.")
        if not READ_ROLES & set(claims.get("roles") or []):
            return defender_error(403, "Forbidden", "The application does not have any of "
                                  "the required application permissions (Alert.ReadWrite.All, "
                                  "Alert.Read.All) to access the resource.")
        if write and not WRITE_ROLES & set(claims.get("roles") or []):
            return defender_error(403, "Forbidden", "The application does not have any of "
                                  "the required application permissions (Alert.ReadWrite.All)"
                                  " to access the resource.")
        return tenant, app

    def _gate(self, request: Request, write: bool = False, batch: bool = False
              ) -> tuple[Tenant, str, Fault | None] | Response:
        """Authenticate, count, apply injected faults, then the rate limits (batchUpdate
        has its own, apart from the alerts API's that GET and PATCH share). A fault that
        shapes the answer's body (`cut`) is handed on."""
        world = self.world
        caller = self._caller(request, write)
        if isinstance(caller, Response):
            return caller
        tenant, app = caller
        world.count_call(tenant.id)
        if write:
            world.count_write(tenant.id, batch)
        fault = faults.take(world, tenant, defender_error, self._throttled)
        if isinstance(fault, Response):
            return fault
        with world.lock:
            limiter = tenant.limiters[f"{app}#batch" if batch else app]
            wait = limiter.admit(world.clock.now(),
                                 world.batch_limits if batch else world.limits)
        if wait:
            world.count_throttled(tenant.id)
            return self._throttled(wait)
        return tenant, app, fault

    @staticmethod
    def _throttled(seconds: int) -> Response:
        return defender_error(429, "TooManyRequests", "Rate limit is exceeded. Try again in "
                              f"{seconds} seconds.", headers={"Retry-After": str(seconds)})

    def list_alerts(self, request: Request) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        tenant, _, cut = gate
        try:
            query = _query(request)
        except ODataError as exc:
            return defender_error(400, "ODataError", f"Invalid query: {exc}")
        with self.world.lock:
            alerts = list(tenant.alerts.values())
        if query["filter"]:
            alerts = [a for a in alerts if query["filter"](a)]
        alerts.sort(key=lambda a: a.seq)
        for name, descending in reversed(query["orderby"]):
            alerts.sort(key=lambda a, n=name: a.ticks.get(n) or 0, reverse=descending)
        page = [_shape(a, query["expand"])  # taken now: an update replaces `raw`
                for a in alerts[query["skip"]: query["skip"] + query["top"]]]
        body = streamed({"@odata.context": f"{request.host_url}api/$metadata#Alerts"}, page,
                        cut.after if cut is not None else None)
        headers = {"Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):  # as Azure's front ends do
            body, headers["Content-Encoding"] = gzipped(body), "gzip"
        return Response(body, content_type="application/json; charset=utf-8",
                        headers=headers)

    def get_alert(self, request: Request, alert_id: str) -> Response:
        gate = self._gate(request)
        if isinstance(gate, Response):
            return gate
        tenant, _, _ = gate
        stored = tenant.alerts.get(alert_id)
        if stored is None:
            return defender_error(404, "NotFound", f"Alert {alert_id} was not found.")
        expand = request.args.get("$expand") == "evidence"
        return json_response({"@odata.context": f"{request.host_url}api/$metadata#Alerts"
                                                "/$entity", **_shape(stored, expand)})

    def update_alert(self, request: Request, alert_id: str) -> Response:
        """PATCH: 200 with the updated alert, 400 naming the bad field, 404 unknown."""
        gate = self._gate(request, write=True)
        if isinstance(gate, Response):
            return gate
        tenant, app, _ = gate
        try:
            fields, _ = alert_updates.parse(_json(request))
            if alert_id not in tenant.alerts:
                return defender_error(404, "NotFound", f"Alert {alert_id} was not found.")
            (raw,) = self.world.write_alerts(tenant, [alert_id], fields, self._name(app))
        except alert_updates.Invalid as exc:
            return defender_error(400, exc.code, str(exc))
        except KeyError:
            return defender_error(404, "NotFound", f"Alert {alert_id} was not found.")
        return json_response({"@odata.context": f"{request.host_url}api/$metadata#Alerts"
                                                "/$entity", **raw, "evidence": []})

    def batch_update(self, request: Request) -> Response:
        """POST batchUpdate: 200 with an empty body; 400 naming a bad field or the
        unknown ids, and then nothing is changed."""
        gate = self._gate(request, write=True, batch=True)
        if isinstance(gate, Response):
            return gate
        tenant, app, _ = gate
        try:
            fields, ids = alert_updates.parse(_json(request), batch=True)
            self.world.write_alerts(tenant, ids, fields, self._name(app))
        except alert_updates.Invalid as exc:
            return defender_error(400, exc.code, str(exc))
        except KeyError as exc:
            return defender_error(400, "InvalidRequestBody",
                                  f"Alerts not found: {exc.args[0]}.")
        return Response(status=200)

    def _name(self, app: str) -> str:
        """How Defender shows an app's comment: by the app's name."""
        known = self.world.apps.get(app)
        return known.name if known else app


def _json(request: Request) -> object:
    if not request.data:
        return None
    try:
        return orjson.loads(request.data)
    except orjson.JSONDecodeError:
        raise alert_updates.Invalid("The request body is not valid JSON.", "BadRequest"
                                    ) from None


def _shape(alert: StoredAlert, expand: bool) -> dict[str, Any]:
    if expand:
        return alert.raw
    return {**alert.raw, "evidence": []}


def _query(request: Request) -> dict[str, Any]:
    args = request.args
    for name in ("$filter", "$top", "$skip", "$orderby", "$expand"):
        if len(args.getlist(name)) > 1:
            raise ODataError(f"Query option '{name}' was specified more than once.")
    top = integer_option(args.get("$top"), "$top", MAX_TOP)
    if top > MAX_TOP:
        raise ODataError(f"The limit of '{MAX_TOP}' for Top query has been exceeded. The "
                         f"value from the incoming request is '{top}'.")
    expand = args.get("$expand")
    if expand not in (None, "evidence", "Evidence"):
        raise ODataError(f"Could not find a property named '{expand}' to expand.")
    filter_text = args.get("$filter")
    return {"filter": parse_filter(filter_text) if filter_text is not None else None,
            "orderby": parse_orderby(args["$orderby"]) if args.get("$orderby") else [],
            "top": top, "skip": integer_option(args.get("$skip"), "$skip", 0),
            "expand": expand is not None}


class Graph:
    """Microsoft Graph `sendMail` for the MSSP's own tenant (application Mail.Send)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def send_mail(self, request: Request, user: str) -> Response:
        world = self.world
        auth = request.headers.get("Authorization", "")
        try:
            claims = world.signer.verify(auth[7:], (GRAPH_AUDIENCE,), world.clock.now())
        except jwt.InvalidTokenError:
            return graph_error(401, "InvalidAuthenticationToken", "Access token is invalid.")
        if "Mail.Send" not in (claims.get("roles") or []):
            return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                               "and try again.")
        tenant = world.find_tenant(claims.get("tid", ""))
        with world.lock:
            fault = tenant.faults.popleft() if tenant and tenant.faults else None
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
            return graph_error(fault.status, "ServiceUnavailable" if fault.status >= 500
                               else "TooManyRequests", "simulated fault", headers)
        if "@" not in user or user.split("@", 1)[1] != (tenant.domain if tenant else ""):
            return graph_error(404, "ErrorInvalidUser", f"The requested user '{user}' is "
                               "invalid.")
        try:
            message = (request.get_json(force=True) or {})["message"]
            recipients = [r["emailAddress"]["address"] for r in message["toRecipients"]]
        except (KeyError, TypeError, ValueError):
            return graph_error(400, "ErrorInvalidRequest", "The message is not valid.")
        refused = [r for r in recipients if r.startswith("refused@")]
        if refused:
            return graph_error(400, "ErrorInvalidRecipients", f"Invalid recipients: {refused}")
        with world.lock:
            world.mail.append({"from": user, "message": message})
        return Response(status=202)
