"""Microsoft Graph's security API: `GET /v1.0/security/alerts_v2` and `/security/incidents`
(and one of each by id), per tenant by the caller's token.

What a client meets, as Microsoft documents it: a token for `https://graph.microsoft.com`
whose roles carry `SecurityAlert.Read.All` (incidents: `SecurityIncident.Read.All`; the
ReadWrite ones too), else 403; `$filter` on the documented properties (anything else, or
an enum member Graph does not know, is 400 with Graph's error body); `$top` up to 1000
(more: 400), `$skip` up to 500, `$count=true`; no `$orderby`: the order is the service's
(newest first); paging only by following `@odata.nextLink`, an opaque `$skiptoken` that
expires (`/_sim/graph` sets its lifetime) and then answers **410 Gone** with code
`resyncRequired` (Graph's documented status for a resource no longer available, and
its code for "start the listing again"); a limit per app per tenant (150 a minute unless
`/_sim/limits` says otherwise) answered 429 with `Retry-After`; the tenant's injected
faults (`/_sim/tenants/{id}/faults`) as on the Defender API.

Paging is by keyset: a page remembers the last item's place, so alerts created or
updated while a client pages are neither skipped nor served twice by the paging itself
(the client's cursor on lastUpdateDateTime still has to catch what changes behind it).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import jwt
import orjson
from werkzeug.wrappers import Request, Response

from devtools.simulator import (
    alert_updates,
    faults,
    graph_alerts,
    graph_incidents,
    graph_paging,
    graph_updates,
)
from devtools.simulator.http import graph_error, gzipped, json_response, streamed
from devtools.simulator.odata import ODataError, Predicate, integer_option, parse_filter
from devtools.simulator.tokens import GRAPH_AUDIENCE, US_GRAPH_AUDIENCE
from devtools.simulator.world import Fault, StoredAlert, StoredGraphAlert, Tenant, World

MAX_TOP = 1000
MAX_SKIP = 500
ALERT_ROLES = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
INCIDENT_ROLES = ("SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All")
ALERT_WRITE_ROLES = ("SecurityAlert.ReadWrite.All",)
INCIDENT_WRITE_ROLES = ("SecurityIncident.ReadWrite.All",)
AUDIENCES = (GRAPH_AUDIENCE, US_GRAPH_AUDIENCE)
_OPTIONS = ("$filter", "$top", "$skip", "$count", "$expand", "$skiptoken")


@dataclass(slots=True)
class _Order:
    """A tenant's alerts of both worlds, newest first, as stored: kept while the world
    adds or replaces no alert (`key`), so a page costs a bisection and the page's own
    alerts, not a sort of the tenant's whole list (50 pages of a 50,000-alert backlog
    were 6.0 s of simulator CPU). An update changes an alert's `raw` in its StoredAlert,
    not its place, so the order stands and each page reads the alert as it is now."""

    key: tuple[object, object, int]  # the tenant's two dicts, the world's seq
    stored: list[StoredAlert]  # seq descending (endpoint StoredAlert, other StoredGraphAlert)
    negated: list[int]  # -seq of each, ascending: bisected for a page's keyset


class GraphSecurity:
    def __init__(self, world: World) -> None:
        self.world = world
        # endpoint alerts' v2 views, kept while the Defender alert (replaced on every
        # change, never changed in place) is the same object
        self._views: dict[tuple[str, str], tuple[dict[str, Any], StoredGraphAlert]] = {}
        self._orders: dict[str, _Order] = {}  # by tenant id

    # who is calling ---------------------------------------------------------------------
    def _caller(self, request: Request, roles: tuple[str, ...]) -> tuple[Tenant, str] | Response:
        world = self.world
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = world.signer.verify(auth[7:], AUDIENCES, world.clock.now())
        except jwt.ExpiredSignatureError:
            return graph_error(401, "InvalidAuthenticationToken",
                               "Lifetime validation failed, the token is expired.")
        except jwt.InvalidTokenError:
            return graph_error(401, "InvalidAuthenticationToken",
                               "Access token validation failure. Invalid audience.")
        tenant = world.find_tenant(claims.get("tid", ""))
        app = claims.get("appid", "")
        if tenant is None:
            return graph_error(401, "InvalidAuthenticationToken", "Unknown tenant.")
        revoked = tenant.revoked_at.get(app)
        if revoked is not None and claims.get("iat", 0) <= revoked:
            return graph_error(401, "InvalidAuthenticationToken", "The application's "
                               "access to this tenant was revoked.")
        granted = list(claims.get("roles") or [])
        if not set(roles) & set(granted):
            return graph_error(403, "Forbidden", "Missing application roles. API required "
                               f"roles: {', '.join(roles)}. Application roles: "
                               f"{', '.join(granted) or 'none'}.")
        return tenant, app

    def _gate(self, request: Request, roles: tuple[str, ...]
              ) -> tuple[Tenant, str, Fault | None] | Response:
        """Authenticate, count, apply injected faults, then Graph's limit. A fault that
        shapes the answer's body (`cut`) is handed on."""
        world = self.world
        caller = self._caller(request, roles)
        if isinstance(caller, Response):
            return caller
        tenant, app = caller
        world.count_call(tenant.id)
        fault = faults.take(world, tenant, graph_error, _throttled)
        if isinstance(fault, Response):
            return fault
        with world.lock:
            wait = tenant.limiters[f"graph#{app}"].admit(world.clock.now(), world.graph_limits)
        if wait:
            world.count_throttled(tenant.id)
            return _throttled(wait)
        return tenant, app, fault

    # what a tenant has, in the v2 schema -------------------------------------------------
    def _view(self, tenant: Tenant, stored: StoredAlert) -> StoredGraphAlert:
        key = (tenant.id, stored.raw["id"])
        cached = self._views.get(key)
        if cached is not None and cached[0] is stored.raw:
            return cached[1]
        view = StoredGraphAlert(graph_alerts.from_mde(stored.raw), stored.seq)
        self._views[key] = (stored.raw, view)
        return view

    def alerts(self, tenant: Tenant, before_seq: int = 2**62) -> Iterator[StoredGraphAlert]:
        """The tenant's alerts as Graph serves them, newest first, from the first one
        older than `before_seq` (a page's keyset), each viewed as it is reached."""
        order = self._order(tenant)
        start = bisect_right(order.negated, -before_seq)
        for stored in islice(order.stored, start, None):
            yield stored if isinstance(stored, StoredGraphAlert) \
                else self._view(tenant, stored)

    def _order(self, tenant: Tenant) -> _Order:
        world = self.world
        with world.lock:
            key = (tenant.alerts, tenant.graph_alerts, world.seq)
            order = self._orders.get(tenant.id)
            if order is not None and order.key[0] is key[0] and order.key[1] is key[1] \
                    and order.key[2] == key[2]:
                return order
            stored: list[StoredAlert] = [*tenant.alerts.values(),
                                         *tenant.graph_alerts.values()]
        stored.sort(key=lambda a: a.seq, reverse=True)
        order = _Order(key, stored, [-a.seq for a in stored])
        self._orders[tenant.id] = order
        return order

    def incidents(self, tenant: Tenant, expand: bool) -> list[StoredGraphAlert]:
        """Every incident as served (its alerts' state folded in), newest first."""
        with self.world.lock:
            stored = list(tenant.incidents.values())
        served = []
        for incident in stored:
            alerts = [a for a in (self._alert(tenant, i) for i in incident.alert_ids) if a]
            raw = graph_incidents.view(incident.raw, alerts)
            if expand:
                raw["alerts"] = alerts
            served.append(StoredGraphAlert(raw, incident.seq))
        served.sort(key=lambda a: a.seq, reverse=True)
        return served

    def _alert(self, tenant: Tenant, alert_id: str) -> dict[str, Any] | None:
        endpoint = tenant.alerts.get(alert_id)
        if endpoint is not None:
            return self._view(tenant, endpoint).raw
        other = tenant.graph_alerts.get(alert_id)
        return other.raw if other is not None else None

    # the endpoints ---------------------------------------------------------------------
    def list_alerts(self, request: Request) -> Response:
        return self._list(request, "alerts")

    def list_incidents(self, request: Request) -> Response:
        return self._list(request, "incidents")

    def get_alert(self, request: Request, alert_id: str) -> Response:
        gate = self._gate(request, ALERT_ROLES)
        if isinstance(gate, Response):
            return gate
        tenant = gate[0]
        alert = self._alert(tenant, alert_id)
        if alert is None:
            return graph_error(404, "NotFound", f"Alert {alert_id} was not found.")
        return json_response({"@odata.context": f"{request.host_url}v1.0/$metadata#security/"
                                                "alerts_v2/$entity", **alert})

    def get_incident(self, request: Request, incident_id: str) -> Response:
        gate = self._gate(request, INCIDENT_ROLES)
        if isinstance(gate, Response):
            return gate
        tenant = gate[0]
        expand = request.args.get("$expand")
        if expand not in (None, "alerts"):
            return graph_error(400, "BadRequest", f"Could not find a property named "
                               f"'{expand}' to expand.")
        found = [i for i in self.incidents(tenant, expand == "alerts")
                 if i.raw["id"] == incident_id]
        if not found:
            return graph_error(404, "NotFound", f"Incident {incident_id} was not found.")
        return json_response({"@odata.context": f"{request.host_url}v1.0/$metadata#security/"
                                                "incidents/$entity", **found[0].raw})

    # updates (triage) -----------------------------------------------------------------
    def update_alert(self, request: Request, alert_id: str) -> Response:
        """PATCH: 200 with the updated alert; 400 naming the bad property or value; 404
        unknown; 403 without SecurityAlert.ReadWrite.All."""
        return self._write(request, alert_id, comment=False)

    def add_comment(self, request: Request, alert_id: str) -> Response:
        """POST comments: 200 with the alert's comments (the new one last)."""
        return self._write(request, alert_id, comment=True)

    def _write(self, request: Request, alert_id: str, comment: bool) -> Response:
        gate = self._gate(request, ALERT_WRITE_ROLES)
        if isinstance(gate, Response):
            return gate
        tenant, app, _ = gate
        try:
            body = _json(request)
            fields, text = ({}, graph_updates.parse_comment(body)) if comment else (
                graph_updates.parse_patch(body), None)
            self.world.write_graph_alert(tenant, alert_id, fields, text, self._name(app))
        except (graph_updates.Invalid, alert_updates.Invalid) as exc:
            return graph_error(400, "BadRequest", str(exc))
        except KeyError:
            return graph_error(404, "NotFound", f"Alert {alert_id} was not found.")
        with self.world.lock:
            alert = self._alert(tenant, alert_id) or {}
        if comment:
            return json_response({"@odata.context": f"{request.host_url}v1.0/$metadata#"
                                  "Collection(microsoft.graph.security.alertComment)",
                                  "value": alert.get("comments") or []})
        return json_response({"@odata.context": f"{request.host_url}v1.0/$metadata#security/"
                                                "alerts_v2/$entity", **alert})

    def update_incident(self, request: Request, incident_id: str) -> Response:
        """PATCH an incident: 200 with it updated (its alerts' state folded in)."""
        return self._write_incident(request, incident_id, comment=False)

    def add_incident_comment(self, request: Request, incident_id: str) -> Response:
        """POST an incident's comments ("Create comment for incident"): 200 with the
        incident's comments (the new one last), as the alert's comments POST answers."""
        return self._write_incident(request, incident_id, comment=True)

    def _write_incident(self, request: Request, incident_id: str, comment: bool
                        ) -> Response:
        gate = self._gate(request, INCIDENT_WRITE_ROLES)
        if isinstance(gate, Response):
            return gate
        tenant, app, _ = gate
        try:
            body = _json(request)
            fields, text = ({}, graph_updates.parse_comment(body)) if comment else (
                graph_updates.parse_patch(body, incident=True), None)
            self.world.write_incident(tenant, incident_id, fields, self._name(app), text)
        except graph_updates.Invalid as exc:
            return graph_error(400, "BadRequest", str(exc))
        except KeyError:
            return graph_error(404, "NotFound", f"Incident {incident_id} was not found.")
        found = [i for i in self.incidents(tenant, False) if i.raw["id"] == incident_id]
        if comment:
            return json_response({"@odata.context": f"{request.host_url}v1.0/$metadata#"
                                  "Collection(microsoft.graph.security.alertComment)",
                                  "value": found[0].raw.get("comments") or []})
        return json_response({"@odata.context": f"{request.host_url}v1.0/$metadata#security/"
                                                "incidents/$entity", **found[0].raw})

    def _name(self, app: str) -> str:
        """How Graph shows who commented: the app's name."""
        known = self.world.apps.get(app)
        return known.name if known else app

    def _list(self, request: Request, listing: str) -> Response:
        world = self.world
        gate = self._gate(request, ALERT_ROLES if listing == "alerts" else INCIDENT_ROLES)
        if isinstance(gate, Response):
            return gate
        tenant, app, cut = gate
        try:
            state, skip = self._state(request, listing, tenant.id, app)
            matches = _matcher(state.filter, listing)
        except graph_paging.Expired as exc:
            return graph_error(410, "resyncRequired", f"{exc} Start the listing again "
                               "without it.")
        except (ODataError, graph_paging.Invalid) as exc:
            return graph_error(400, "BadRequest", f"Invalid request: {exc}")
        incidents = None if listing == "alerts" else self.incidents(tenant, state.expand)
        items = self.alerts(tenant, state.after_seq) if incidents is None else incidents
        wanted = (i for i in items if i.seq < state.after_seq and matches(i))
        after = list(islice(wanted, skip, skip + state.top + 1))  # one more: is there more?
        page, more = after[:state.top], len(after) > state.top
        path = "alerts_v2" if listing == "alerts" else "incidents"
        head: dict[str, Any] = {
            "@odata.context": f"{request.host_url}v1.0/$metadata#security/{path}"}
        if state.count:
            every = self.alerts(tenant) if incidents is None else incidents
            head["@odata.count"] = sum(1 for i in every if matches(i))
        if more and page:
            token = graph_paging.encode(graph_paging.PageState(
                listing, tenant.id, app, state.filter, state.top, state.count,
                state.expand, page[-1].seq,
                world.clock.now() + world.graph.next_link_seconds), world.page_key)
            head["@odata.nextLink"] = (f"{request.host_url}v1.0/security/{path}"
                                       f"?$skiptoken={token}")
        body = streamed(head, [i.raw for i in page], cut.after if cut is not None else None)
        headers = {"Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers["Content-Encoding"] = gzipped(body), "gzip"
        return Response(body, content_type="application/json; charset=utf-8",
                        headers=headers)

    def _state(self, request: Request, listing: str, tenant_id: str, app: str
               ) -> tuple[graph_paging.PageState, int]:
        """The listing's state: from the query (a first page) or from its `$skiptoken`
        (a page a nextLink named), and the `$skip` to apply."""
        args, world = request.args, self.world
        for name in args:
            if name.startswith("$") and name not in _OPTIONS:
                raise ODataError(f"Query option '{name}' is not supported.")
            if len(args.getlist(name)) > 1:
                raise ODataError(f"Query option '{name}' was specified more than once.")
        token = args.get("$skiptoken")
        if token is not None:
            if any(n in args for n in _OPTIONS if n != "$skiptoken"):
                raise ODataError("A $skiptoken carries the query: send the nextLink as is.")
            state = graph_paging.decode(token, world.page_key, world.clock.now())
            if (state.listing, state.tenant, state.app) != (listing, tenant_id, app):
                raise graph_paging.Invalid("The $skiptoken belongs to another listing.")
            return state, 0
        top = integer_option(args.get("$top"), "$top", world.graph.page_size)
        if top > MAX_TOP:
            raise ODataError(f"The limit of '{MAX_TOP}' for Top query has been exceeded. "
                             f"The value from the incoming request is '{top}'.")
        skip = integer_option(args.get("$skip"), "$skip", 0)
        if skip > MAX_SKIP:
            raise ODataError(f"The limit of '{MAX_SKIP}' for Skip query has been exceeded. "
                             f"The value from the incoming request is '{skip}'.")
        count = args.get("$count", "false")
        if count not in ("true", "false"):
            raise ODataError(f"Invalid value '{count}' for $count query option: true or "
                             "false.")
        expand = args.get("$expand")
        if expand is not None and (listing != "incidents" or expand != "alerts"):
            raise ODataError(f"Could not find a property named '{expand}' to expand.")
        text = args.get("$filter")
        _matcher(text, listing)  # refuse a bad filter on the first page
        return graph_paging.PageState(listing, tenant_id, app, text, top, count == "true",
                                      expand is not None, 2**62, 0.0), skip


def _json(request: Request) -> object:
    if not request.data:
        return None
    try:
        return orjson.loads(request.data)
    except orjson.JSONDecodeError:
        raise graph_updates.Invalid("Unable to read JSON request payload.") from None


def _matcher(text: str | None, listing: str) -> Predicate:
    if text is None:
        return lambda _: True
    return parse_filter(text, graph_alerts.ALERT_SCHEMA if listing == "alerts"
                        else graph_incidents.INCIDENT_SCHEMA)


def _throttled(seconds: int) -> Response:
    return graph_error(429, "TooManyRequests", "Too many requests; retry after "
                       f"{seconds} seconds.", {"Retry-After": str(seconds)})
