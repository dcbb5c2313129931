"""The simulator as one HTTPS server on loopback, with a trustme CA the app is told to trust;
optionally the pages a person's browser opens also on plain HTTP (no certificate warning),
and its world kept on disk across restarts (snapshot.py)."""

from __future__ import annotations

import logging
import random
import ssl
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from devtools.simulator import snapshot
from devtools.simulator.control import Control
from devtools.simulator.defender import Defender, Graph
from devtools.simulator.entra import Entra
from devtools.simulator.graph_security import GraphSecurity
from devtools.simulator.tokens import DEFENDER_AUDIENCES, GRAPH_AUDIENCE
from devtools.simulator.world import GRAPH_TRIAGE_ROLES, TRIAGE_ROLES, App, Tenant, World

log = logging.getLogger("simulator")

DEFAULT_CLIENT_ID = "5a1c3b0e-6f0d-4e1a-9a52-3c0f5d9b7e21"
DEFAULT_TRIAGE_CLIENT_ID = "7c2e4d1f-8a3b-4c5d-9e6f-1a2b3c4d5e6f"  # Alert.ReadWrite.All
DEFAULT_MSSP_TENANT = "0b7e3f3a-2d4c-4b8e-9f61-8d2c1a5e4f90"
DEMO_TENANTS = (  # name, alerts at start, consented, defender
    ("Contoso Ltd", 120, True, "enabled"),
    ("Fabrikam Inc", 30, True, "enabled"),
    ("Northwind Traders", 600, True, "enabled"),
    ("Tailspin Toys", 10, False, "enabled"),
    ("Woodgrove Bank", 0, True, "none"),
)
DEMO_TRIAGE = ("Contoso Ltd",)  # also consented to the triage app: actions allowed


def demo_tenant_id(name: str) -> str:
    """Stable ids, so a restarted simulator matches what the app registered."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.mssp-hub.test"))


@dataclass
class SimulatorConfig:
    ca_path: Path
    host: str = "127.0.0.1"
    port: int = 0
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = field(default_factory=lambda: uuid.uuid4().hex + "~Sim")
    triage_client_id: str = DEFAULT_TRIAGE_CLIENT_ID
    triage_client_secret: str = field(default_factory=lambda: uuid.uuid4().hex + "~Tri")
    mssp_tenant_id: str = DEFAULT_MSSP_TENANT
    redirect_uris: list[str] = field(default_factory=list)
    certificate_path: Path | None = None  # where to write the app's certificate + key
    state_path: Path | None = None  # keep the world here across restarts (snapshot.py)
    # also serve the pages a person's browser opens (/authorize) on plain HTTP on this
    # port (0: any free one), so a real browser shows no certificate warning; None: don't
    browser_port: int | None = None


class Simulator:
    """Start, use (`world`, `base_url`), stop. Runs in-process or under `python -m`."""

    def __init__(self, config: SimulatorConfig) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self.config = config
        self.world = World()
        self.entra, self.defender = Entra(self.world), Defender(self.world)
        self.control = Control(self.world)
        self.graph = Graph(self.world)
        self.security = GraphSecurity(self.world)
        self.url_map = Map(self._rules(), strict_slashes=False)
        self.server: BaseWSGIServer | None = None
        self.browser_server: BaseWSGIServer | None = None
        self.browser_map = Map([Rule("/<tenant>/oauth2/v2.0/authorize",
                                     endpoint=self.entra.authorize, methods=["GET", "POST"])])
        self._threads: list[threading.Thread] = []
        self.app = self.world.add_app(App(
            client_id=config.client_id.lower(), name="MSSP Hub (simulated)",
            home_tenant=config.mssp_tenant_id, secrets={config.client_secret},
            redirect_uris=list(config.redirect_uris)))
        self.triage_app = self.world.add_app(App(
            client_id=config.triage_client_id.lower(), name="MSSP Hub triage (simulated)",
            home_tenant=config.mssp_tenant_id, secrets={config.triage_client_secret},
            redirect_uris=list(config.redirect_uris),
            permissions={DEFENDER_AUDIENCES[0]: list(TRIAGE_ROLES),
                         GRAPH_AUDIENCE: list(GRAPH_TRIAGE_ROLES)}))
        self.world.add_tenant("MSSP Operations", "mssp.onmicrosoft.com", config.mssp_tenant_id)
        self.restored = bool(config.state_path) and snapshot.load(self.world, config.state_path)
        self.keeper: snapshot.Keeper | None = None

    def _rules(self) -> Iterable[Rule]:
        e, d, c, g = self.entra, self.defender, self.control, self.security

        def ctl(handler: Callable[..., Response]) -> Callable[..., Response]:
            return lambda request, **kw: c.dispatch(handler, request, **kw)

        return [
            Rule("/<tenant>/v2.0/.well-known/openid-configuration", endpoint=e.openid_configuration,
                 methods=["GET"]),
            Rule("/<tenant>/discovery/v2.0/keys", endpoint=e.keys, methods=["GET"]),
            Rule("/<tenant>/oauth2/v2.0/token", endpoint=e.token, methods=["POST"]),
            Rule("/<tenant>/oauth2/v2.0/authorize", endpoint=e.authorize,
                 methods=["GET", "POST"]),
            Rule("/api/alerts", endpoint=d.list_alerts, methods=["GET"]),
            Rule("/api/v1.0/alerts", endpoint=d.list_alerts, methods=["GET"]),
            Rule("/api/alerts/batchUpdate", endpoint=d.batch_update, methods=["POST"]),
            Rule("/api/v1.0/alerts/batchUpdate", endpoint=d.batch_update, methods=["POST"]),
            Rule("/api/alerts/<alert_id>", endpoint=d.get_alert, methods=["GET"]),
            Rule("/api/v1.0/alerts/<alert_id>", endpoint=d.get_alert, methods=["GET"]),
            Rule("/api/alerts/<alert_id>", endpoint=d.update_alert, methods=["PATCH"]),
            Rule("/api/v1.0/alerts/<alert_id>", endpoint=d.update_alert, methods=["PATCH"]),
            Rule("/v1.0/users/<user>/sendMail", endpoint=self.graph.send_mail,
                 methods=["POST"]),
            Rule("/v1.0/security/alerts_v2", endpoint=g.list_alerts, methods=["GET"]),
            Rule("/v1.0/security/alerts_v2/<alert_id>", endpoint=g.get_alert,
                 methods=["GET"]),
            Rule("/v1.0/security/alerts_v2/<alert_id>", endpoint=g.update_alert,
                 methods=["PATCH"]),
            Rule("/v1.0/security/alerts_v2/<alert_id>/comments", endpoint=g.add_comment,
                 methods=["POST"]),
            Rule("/v1.0/security/incidents", endpoint=g.list_incidents, methods=["GET"]),
            Rule("/v1.0/security/incidents/<incident_id>", endpoint=g.update_incident,
                 methods=["PATCH"]),
            Rule("/v1.0/security/incidents/<incident_id>", endpoint=g.get_incident,
                 methods=["GET"]),
            Rule("/v1.0/security/incidents/<incident_id>/comments",
                 endpoint=g.add_incident_comment, methods=["POST"]),
            Rule("/_sim/mail", endpoint=ctl(c.mail), methods=["GET", "DELETE"]),
            Rule("/_sim/apps", endpoint=ctl(c.apps), methods=["GET", "POST"]),
            Rule("/_sim/tenants", endpoint=ctl(c.tenants), methods=["GET", "POST"]),
            Rule("/_sim/tenants/<tenant_id>", endpoint=ctl(c.tenant), methods=["GET", "PATCH"]),
            Rule("/_sim/tenants/<tenant_id>/consent", endpoint=ctl(c.consent),
                 methods=["POST", "DELETE"]),
            Rule("/_sim/tenants/<tenant_id>/alerts", endpoint=ctl(c.alerts),
                 methods=["GET", "POST"]),
            Rule("/_sim/tenants/<tenant_id>/alerts/generate", endpoint=ctl(c.generate),
                 methods=["POST"]),
            Rule("/_sim/tenants/<tenant_id>/alerts/touch", endpoint=ctl(c.touch),
                 methods=["POST"]),
            Rule("/_sim/tenants/<tenant_id>/alerts/<alert_id>", endpoint=ctl(c.alert),
                 methods=["PATCH"]),
            Rule("/_sim/tenants/<tenant_id>/incidents", endpoint=ctl(c.incidents),
                 methods=["GET", "POST"]),
            Rule("/_sim/tenants/<tenant_id>/incidents/<incident_id>",
                 endpoint=ctl(c.incident), methods=["PATCH"]),
            Rule("/_sim/tenants/<tenant_id>/faults", endpoint=ctl(c.faults),
                 methods=["POST", "DELETE"]),
            Rule("/_sim/keys/rotate", endpoint=ctl(c.rotate_keys), methods=["POST"]),
            Rule("/_sim/id-token", endpoint=ctl(c.id_token), methods=["PUT", "DELETE"]),
            Rule("/_sim/limits", endpoint=ctl(c.limits), methods=["GET", "PUT"]),
            Rule("/_sim/graph", endpoint=ctl(c.graph), methods=["GET", "PUT"]),
            Rule("/_sim/clock", endpoint=ctl(c.clock), methods=["GET", "POST"]),
            Rule("/_sim/counters", endpoint=ctl(c.counters), methods=["GET", "DELETE"]),
        ]

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self._dispatch(self.url_map, environ, start_response)

    def browser_wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]
                     ) -> Any:
        """Only the pages a person sees: tokens, keys and the APIs stay on HTTPS."""
        return self._dispatch(self.browser_map, environ, start_response)

    def _dispatch(self, url_map: Map, environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            endpoint, args = url_map.bind_to_environ(environ).match()
            response = endpoint(request, **args)
        except HTTPException as exc:
            response = exc.get_response(environ)
        except Exception:
            log.exception("simulator: %s %s failed", request.method, request.path)
            response = Response("internal error", status=500)
        return response(environ, start_response)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"https://{self.config.host}:{self.server.server_port}"

    @property
    def browser_base_url(self) -> str:
        """Where a browser opens the sign-in pages: plain HTTP if configured, else HTTPS."""
        if self.browser_server is None:
            return self.base_url
        return f"http://{self.config.host}:{self.browser_server.server_port}"

    def start(self) -> Simulator:
        ca = trustme.CA(organization_name="mssp-hub simulator")
        server_cert = ca.issue_cert("localhost", "127.0.0.1")
        self.config.ca_path.parent.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(self.config.ca_path))
        if self.config.certificate_path:
            client = ca.issue_cert("mssp-hub-client.test", key_type=trustme.KeyType.RSA)
            self.config.certificate_path.parent.mkdir(parents=True, exist_ok=True)
            self.config.certificate_path.write_bytes(
                client.private_key_pem.bytes() + client.cert_chain_pems[0].bytes())
            self.app.add_certificate(client.cert_chain_pems[0].bytes())
            self.triage_app.add_certificate(client.cert_chain_pems[0].bytes())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_cert.configure_cert(context)
        self.server = make_server(self.config.host, self.config.port, self.wsgi, threaded=True,
                                  ssl_context=context)
        thread = threading.Thread(target=self.server.serve_forever, name="simulator",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)
        if self.config.browser_port is not None:
            self.browser_server = make_server(self.config.host, self.config.browser_port,
                                              self.browser_wsgi, threaded=True)
            thread = threading.Thread(target=self.browser_server.serve_forever,
                                      name="simulator-browser", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.config.state_path:
            self.keeper = snapshot.Keeper(self.world, self.config.state_path).start()
        return self

    def stop(self) -> None:
        self.world.stopping.set()
        for server in (self.server, self.browser_server):
            if server:
                server.shutdown()
                server.server_close()
        if self.keeper:
            self.keeper.stop()

    # demo -------------------------------------------------------------------------------
    def seed_demo(self) -> list[Tenant]:
        """A few customer tenants of different sizes, most consented, alerts waiting. A
        tenant restored from the saved state is kept as it was (its consent, its alerts)."""
        made = []
        for name, alerts, consented, defender in DEMO_TENANTS:
            existing = self.world.find_tenant(demo_tenant_id(name))
            tenant = existing or self.world.add_tenant(
                name, tenant_id=demo_tenant_id(name), defender=defender)
            made.append(tenant)
            if existing and self.restored:
                continue
            if consented:
                self.world.grant(tenant, self.app.client_id)
            if consented and name in DEMO_TRIAGE:
                self.world.grant(tenant, self.triage_app.client_id)
            if alerts and defender == "enabled":
                self.world.generate(tenant, alerts, age_seconds=3600)
        return made

    def start_demo(self, rate: float, seed: int = 1) -> None:
        """Keep alerts coming: `rate` per second across tenants, some moving through states."""
        rng = random.Random(seed)

        def run() -> None:
            while not self.world.stopping.wait(1.0 / rate):
                tenants = [t for t in self.world.tenants.values()
                           if t.defender == "enabled" and t.consents]
                if not tenants:
                    continue
                tenant = rng.choice(tenants)
                if tenant.alerts and rng.random() < 0.35:
                    candidate = rng.choice(list(tenant.alerts))
                    self.world.update_alert(tenant, candidate, None)
                else:
                    self.world.generate(tenant, rng.choice((1, 1, 1, 3)),
                                        same_time=rng.random() < 0.2)

        thread = threading.Thread(target=run, name="simulator-demo", daemon=True)
        thread.start()
        self._threads.append(thread)
