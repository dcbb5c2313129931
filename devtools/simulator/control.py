"""The control API under /_sim/: set up tenants, alerts, consent, faults; read counters.

For tests, the demo and benchmarks. Loopback only and unauthenticated: never deployed.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from devtools.simulator import graph_alerts, graph_incidents
from devtools.simulator.http import json_response
from devtools.simulator.ratelimit import Limits
from devtools.simulator.world import App, Fault, Tenant, World


class BadRequest(ValueError):
    pass


def _body(request: Request) -> Any:
    if not request.data:
        return {}
    try:
        return json.loads(request.data)
    except ValueError:
        raise BadRequest("the body is not JSON") from None


def _int(body: dict[str, Any], name: str, default: int, low: int = 0, high: int = 10**7
         ) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return value


def _set_limits(limits: Limits, given: dict[str, Any]) -> None:
    limits.per_minute = _int(given, "per_minute", limits.per_minute, 1)
    limits.per_hour = _int(given, "per_hour", limits.per_hour, 1)


class Control:
    def __init__(self, world: World) -> None:
        self.world = world

    def dispatch(self, handler: Any, request: Request, **kwargs: Any) -> Response:
        try:
            return handler(request, **kwargs)
        except BadRequest as exc:
            return json_response({"error": str(exc)}, 400)
        except (ValueError, TypeError) as exc:
            return json_response({"error": str(exc)}, 400)
        except KeyError as exc:
            return json_response({"error": f"not found: {exc.args[0]}"}, 404)

    def _tenant(self, tenant_id: str) -> Tenant:
        tenant = self.world.find_tenant(tenant_id)
        if tenant is None:
            raise KeyError(tenant_id)
        return tenant

    # apps -------------------------------------------------------------------------------
    def apps(self, request: Request) -> Response:
        world = self.world
        if request.method == "GET":
            return json_response([{"client_id": a.client_id, "name": a.name,
                                   "home_tenant": a.home_tenant,
                                   "redirect_uris": a.redirect_uris} for a in world.apps.values()])
        body = _body(request)
        app = world.apps.get((body.get("client_id") or "").lower())
        if app is None:
            app = App(client_id=body["client_id"].lower(), name=body.get("name", "MSSP app"),
                      home_tenant=body["home_tenant"].lower())
        for secret in body.get("secrets", []):
            app.secrets.add(secret)
        if body.get("certificate_pem"):
            app.add_certificate(body["certificate_pem"].encode())
        for uri in body.get("redirect_uris", []):
            if uri not in app.redirect_uris:
                app.redirect_uris.append(uri)
        world.add_app(app)
        return json_response({"client_id": app.client_id}, 201)

    # tenants ----------------------------------------------------------------------------
    def tenants(self, request: Request) -> Response:
        world = self.world
        if request.method == "GET":
            return json_response([t.summary() for t in world.tenants.values()])
        body = _body(request)
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise BadRequest("name is required")
        tenant = world.add_tenant(body["name"], body.get("domain"), body.get("id"),
                                  body.get("defender", "enabled"))
        for client_id in body.get("consent", []):
            world.grant(tenant, client_id.lower())
        if body.get("alerts"):
            world.generate(tenant, _int(body, "alerts", 0, 0, 200_000))
        return json_response(tenant.summary(), 201)

    def tenant(self, request: Request, tenant_id: str) -> Response:
        tenant = self._tenant(tenant_id)
        if request.method == "PATCH":
            body = _body(request)
            if "defender" in body:
                if body["defender"] not in ("enabled", "none", "disabled"):
                    raise BadRequest("defender must be enabled, none or disabled")
                tenant.defender = body["defender"]
            if "name" in body:
                tenant.name = str(body["name"])
        return json_response(tenant.summary())

    def consent(self, request: Request, tenant_id: str) -> Response:
        tenant = self._tenant(tenant_id)
        body = _body(request)
        client_id = (body.get("client_id") or request.args.get("client_id")
                     or next(iter(self.world.apps))).lower()
        if client_id not in self.world.apps:
            raise KeyError(client_id)
        if request.method == "DELETE":
            self.world.revoke(tenant, client_id)
        else:
            self.world.grant(tenant, client_id, body.get("roles"))
        return json_response(tenant.summary())

    # alerts -----------------------------------------------------------------------------
    def alerts(self, request: Request, tenant_id: str) -> Response:
        """GET: the Defender alerts (`?schema=graph`: every alert as Graph serves it).
        POST: alerts as given; one with a `serviceSource` is a v2 alert."""
        tenant = self._tenant(tenant_id)
        if request.method == "GET":
            if request.args.get("schema") == "graph":
                with self.world.lock:
                    ids = [a.raw["id"] for a in sorted(
                        [*tenant.alerts.values(), *tenant.graph_alerts.values()],
                        key=lambda a: a.seq)]
                return json_response([self.world.v2_alert(tenant, i) for i in ids])
            with self.world.lock:
                raws = [a.raw for a in sorted(tenant.alerts.values(), key=lambda a: a.seq)]
            return json_response(raws)
        body = _body(request)
        items = body if isinstance(body, list) else [body]
        for raw in items:
            if isinstance(raw, dict) and "serviceSource" in raw:
                self.world.put_graph_alert(tenant, raw)
            else:
                self.world.put_alert(tenant, raw)
        return json_response({"added": len(items)}, 201)

    def generate(self, request: Request, tenant_id: str) -> Response:
        """New alerts. With `service_sources` (Graph's product names), v2 alerts of those
        products in turn, `alerts_per_incident` (default 1) to an incident."""
        tenant = self._tenant(tenant_id)
        body = _body(request)
        if "service_sources" in body or "alerts_per_incident" in body:
            sources = body.get("service_sources", [graph_alerts.MDE])
            if not isinstance(sources, list):
                raise BadRequest("service_sources must be a list")
            alerts, incidents = self.world.generate_graph(
                tenant, _int(body, "count", 1, 1, 200_000), sources,
                _int(body, "alerts_per_incident", 1, 1, 1000),
                same_time=bool(body.get("same_last_update_time")),
                age_seconds=float(body.get("age_seconds", 0)))
            return json_response({
                "ids": [a["id"] for a in alerts], "incident_ids": incidents,
                "lastUpdateDateTimes": sorted({a["lastUpdateDateTime"] for a in alerts})},
                201)
        made = self.world.generate(
            tenant, _int(body, "count", 1, 1, 200_000),
            same_time=bool(body.get("same_last_update_time")),
            evidence_bytes=_int(body, "evidence_bytes", 0, 0, 16 * 1024 * 1024),
            age_seconds=float(body.get("age_seconds", 0)))
        return json_response({"ids": [a["id"] for a in made],
                              "lastUpdateTimes": sorted({a["lastUpdateTime"] for a in made})},
                             201)

    def alert(self, request: Request, tenant_id: str, alert_id: str) -> Response:
        """An update in the alert's own schema (Defender's for an endpoint alert, which
        Graph then shows too; v2 for another product's), or `progress`."""
        tenant = self._tenant(tenant_id)
        body = _body(request)
        changes = None if body.get("progress") else body
        if alert_id not in tenant.alerts and alert_id in tenant.graph_alerts:
            return json_response(self.world.update_graph_alert(tenant, alert_id, changes))
        return json_response(self.world.update_alert(tenant, alert_id, changes))

    def touch(self, request: Request, tenant_id: str) -> Response:
        """Move these alerts' (`ids`; all the tenant's if absent) last update to one time."""
        tenant = self._tenant(tenant_id)
        ids = _body(request).get("ids")
        if ids is not None and not isinstance(ids, list):
            raise BadRequest("ids must be a list")
        when, touched = self.world.touch(tenant, ids)
        return json_response({"lastUpdateDateTime": when, "ids": touched})

    # incidents (Graph) ------------------------------------------------------------------
    def incidents(self, request: Request, tenant_id: str) -> Response:
        """GET: the incidents as Graph serves them, with their alerts. POST: incidents as
        given, each naming its alerts in `alertIds`."""
        tenant = self._tenant(tenant_id)
        world = self.world
        if request.method == "GET":
            with world.lock:
                stored = sorted(tenant.incidents.values(), key=lambda i: i.seq)
            served = []
            for incident in stored:
                alerts = [a for a in (world.v2_alert(tenant, i) for i in incident.alert_ids)
                          if a]
                served.append({**graph_incidents.view(incident.raw, alerts),
                               "alerts": alerts})
            return json_response(served)
        body = _body(request)
        for raw in body if isinstance(body, list) else [body]:
            if not isinstance(raw, dict):
                raise BadRequest("an incident is an object")
            raw = dict(raw)
            world.put_incident(tenant, raw, raw.pop("alertIds", []))
        return json_response(tenant.summary(), 201)

    def incident(self, request: Request, tenant_id: str, incident_id: str) -> Response:
        tenant = self._tenant(tenant_id)
        body = _body(request)
        changes = None if body.get("progress") else body
        return json_response(self.world.update_incident(tenant, incident_id, changes))

    # faults, limits, clock, counters ----------------------------------------------------
    def faults(self, request: Request, tenant_id: str) -> Response:
        tenant = self._tenant(tenant_id)
        if request.method == "DELETE":
            tenant.faults.clear()
            return json_response(tenant.summary())
        body = _body(request)
        kind = body.get("kind")
        if kind not in ("status", "hang", "malformed", "body", "cut"):
            raise BadRequest("kind must be status, hang, malformed, body or cut")
        fault = Fault(kind=kind, status=_int(body, "status", 500, 400, 599),
                      retry_after=body.get("retry_after"),
                      seconds=float(body.get("seconds", 30)), body=str(body.get("body", "")),
                      after=_int(body, "after", 0))
        with self.world.lock:
            tenant.faults.extend([fault] * _int(body, "count", 1, 1, 10_000))
        return json_response(tenant.summary(), 201)

    # signing keys and ID tokens ---------------------------------------------------------
    def rotate_keys(self, request: Request) -> Response:
        """A new signing key; `keep_old: false` also stops publishing the old ones."""
        keep = _body(request).get("keep_old", True)
        if not isinstance(keep, bool):
            raise BadRequest("keep_old must be true or false")
        with self.world.lock:
            kid = self.world.signer.rotate(keep)
            published = [k["kid"] for k in self.world.signer.jwks()["keys"]]
        return json_response({"kid": kid, "published": published})

    def id_token(self, request: Request) -> Response:
        """The next ID token the token endpoint issues gets these changes (once):
        `claims` to override, `drop` to remove, `foreign_key` true or "same_kid"."""
        if request.method == "DELETE":
            self.world.id_token_tamper = None
            return json_response({})
        body = _body(request)
        if set(body) - {"claims", "drop", "foreign_key"}:
            raise BadRequest("only claims, drop and foreign_key")
        if not isinstance(body.get("claims", {}), dict) or not isinstance(
                body.get("drop", []), list) or body.get("foreign_key", False) not in (
                True, False, "same_kid"):
            raise BadRequest("claims an object, drop a list, foreign_key true or same_kid")
        with self.world.lock:
            self.world.id_token_tamper = body
        return json_response(body)

    def limits(self, request: Request) -> Response:
        """The alerts API's limits (GET and PATCH), under `batch` batchUpdate's, under
        `graph` Graph's security API's."""
        limits, batch = self.world.limits, self.world.batch_limits
        if request.method == "PUT":
            body = _body(request)
            _set_limits(limits, body)
            for name, kept in (("batch", batch), ("graph", self.world.graph_limits)):
                given = body.get(name) or {}
                if not isinstance(given, dict):
                    raise BadRequest(f"{name} must be an object")
                _set_limits(kept, given)
        graph = self.world.graph_limits
        return json_response({"per_minute": limits.per_minute, "per_hour": limits.per_hour,
                              "batch": {"per_minute": batch.per_minute,
                                        "per_hour": batch.per_hour},
                              "graph": {"per_minute": graph.per_minute,
                                        "per_hour": graph.per_hour}})

    def graph(self, request: Request) -> Response:
        """Graph's listing settings: `page_size` (without $top) and `next_link_seconds`
        (how long a nextLink works; 0: it has expired by the time it is followed)."""
        settings = self.world.graph
        if request.method == "PUT":
            body = _body(request)
            settings.page_size = _int(body, "page_size", settings.page_size, 1, 1000)
            seconds = body.get("next_link_seconds", settings.next_link_seconds)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise BadRequest("next_link_seconds must be a number >= 0")
            settings.next_link_seconds = float(seconds)
        return json_response({"page_size": settings.page_size,
                              "next_link_seconds": settings.next_link_seconds})

    def clock(self, request: Request) -> Response:
        if request.method == "POST":
            self.world.clock.advance(float(_body(request).get("advance", 0)))
        return json_response({"now": self.world.clock.now()})

    def counters(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.world.reset_counters()
        return json_response(self.world.snapshot_counters())

    def mail(self, request: Request) -> Response:
        with self.world.lock:
            if request.method == "DELETE":
                self.world.mail.clear()
            return json_response(list(self.world.mail))
