"""Everything the simulator knows: registered apps, tenants, their alerts, faults, counters."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from devtools.simulator import alert_updates, graph_alerts, graph_incidents, graph_updates
from devtools.simulator.alerts import AlertFactory
from devtools.simulator.clock import Clock, format_ticks, parse_ticks
from devtools.simulator.odata import TIME_FIELDS
from devtools.simulator.ratelimit import Limits, SlidingLimiter
from devtools.simulator.tokens import DEFENDER_AUDIENCES, Signer, thumbprints

DEFENDER_ROLES = ["Alert.Read.All"]
TRIAGE_ROLES = ["Alert.ReadWrite.All"]  # the MSSP's second app: triage (issue 20)
# Graph: sendMail in the MSSP's tenant; the security API in customers' (issue 21)
GRAPH_ROLES = ["Mail.Send", "SecurityAlert.Read.All", "SecurityIncident.Read.All"]
# Graph triage: the triage app's update permissions on the security API
GRAPH_TRIAGE_ROLES = ["SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All"]


@dataclass
class App:
    """A multi-tenant app registration (the MSSP's)."""

    client_id: str
    name: str
    home_tenant: str
    secrets: set[str] = field(default_factory=set)
    certificates: dict[str, Any] = field(default_factory=dict)  # thumbprint -> public key
    redirect_uris: list[str] = field(default_factory=list)
    # resource audience -> application permissions the app asks for
    permissions: dict[str, list[str]] = field(default_factory=lambda: {
        DEFENDER_AUDIENCES[0]: list(DEFENDER_ROLES),
        "https://graph.microsoft.com": list(GRAPH_ROLES)})

    def add_certificate(self, cert_pem: bytes) -> None:
        sha1, sha256, key = thumbprints(cert_pem)
        self.certificates[sha1] = key
        self.certificates[sha256] = key


@dataclass
class StoredAlert:
    """An alert as given (`raw`, served as is) plus its times in ticks for filtering."""

    raw: dict[str, Any]
    seq: int
    ticks: dict[str, int | None] = field(default_factory=dict)
    time_fields: ClassVar[tuple[str, ...]] = TIME_FIELDS

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        self.ticks = {}
        for name in self.time_fields:
            value = self.raw.get(name)
            try:
                self.ticks[name] = parse_ticks(value) if isinstance(value, str) else None
            except ValueError:
                self.ticks[name] = None


class StoredGraphAlert(StoredAlert):
    """A v2 alert (Graph's schema; another product's, or an endpoint alert's view)."""

    time_fields = graph_alerts.TIME_FIELDS


class StoredIncident(StoredAlert):
    """A Graph incident as the service keeps it (`raw`) and the ids of its alerts."""

    time_fields = graph_incidents.TIME_FIELDS

    def __init__(self, raw: dict[str, Any], seq: int, alert_ids: list[str]) -> None:
        super().__init__(raw, seq)
        self.alert_ids = alert_ids


@dataclass
class GraphSettings:
    """Graph's listing behaviour: server page size without $top, nextLink lifetime."""

    page_size: int = 100
    next_link_seconds: float = 600.0


@dataclass
class Fault:
    """What the next API call for a tenant gets instead of an answer."""

    kind: str  # status | hang | malformed | body | cut
    status: int = 500
    retry_after: int | None = None
    seconds: float = 0.0
    body: str = ""  # body: answered as is, with 200
    after: int = 0  # cut: the page breaks off after this many alerts


@dataclass
class AuthCode:
    """An authorization code the simulated /authorize issued: single use, short-lived."""

    client_id: str
    redirect_uri: str
    tenant_id: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    user: str
    expires_at: float  # on the simulated clock
    redeemed: bool = False


@dataclass
class Tenant:
    id: str
    name: str
    domain: str
    defender: str = "enabled"  # enabled | none (no service principal) | disabled (403)
    consents: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # app -> roles
    revoked_at: dict[str, float] = field(default_factory=dict)  # app -> when consent ended
    alerts: dict[str, StoredAlert] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)
    limiters: dict[str, SlidingLimiter] = field(default_factory=lambda: defaultdict(
        SlidingLimiter))
    factory: AlertFactory | None = None
    # Graph's security API: other products' alerts and the incidents (issue 21)
    graph_alerts: dict[str, StoredGraphAlert] = field(default_factory=dict)
    incidents: dict[str, StoredIncident] = field(default_factory=dict)
    graph_factory: graph_alerts.GraphAlertFactory | None = None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "domain": self.domain,
                "defender": self.defender, "consented_apps": sorted(self.consents),
                "alerts": len(self.alerts), "graph_alerts": len(self.graph_alerts),
                "incidents": len(self.incidents), "faults_pending": len(self.faults)}


class World:
    """The simulator's whole state, guarded by one lock (requests run on threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = Clock()
        self.signer = Signer()
        self.limits = Limits()  # the alerts API: GET and PATCH
        self.batch_limits = Limits(per_minute=10, per_hour=500)  # batchUpdate's own
        # Graph's security API: 150 a minute per app per tenant (docs/development.md)
        self.graph_limits = Limits(per_minute=150, per_hour=9000)
        self.graph = GraphSettings()
        self.page_key = os.urandom(32)  # signs nextLinks: a restart expires them
        self.apps: dict[str, App] = {}
        self.tenants: dict[str, Tenant] = {}
        self.counters: Counter[str] = Counter()
        self.calls_by_tenant: Counter[str] = Counter()
        self.calls_by_minute: dict[str, Counter[int]] = defaultdict(Counter)
        self.throttled_by_tenant: Counter[str] = Counter()
        self.writes_by_tenant: Counter[str] = Counter()  # PATCH calls (counted in calls too)
        self.batches_by_tenant: Counter[str] = Counter()  # batchUpdate calls (likewise)
        self.tokens_by_tenant: Counter[str] = Counter()
        self.seq = 0
        self.stopping = threading.Event()  # wakes hanging fault responses at shutdown
        self.consent_changed = threading.Event()  # a kept world is saved at once, not later
        self.mail: list[dict[str, Any]] = []  # what Graph sendMail accepted
        self.codes: dict[str, AuthCode] = {}
        # tests: claims (or `foreign_key`) forced into the next ID token, then cleared
        self.id_token_tamper: dict[str, Any] | None = None

    # apps and tenants -------------------------------------------------------------------
    def add_app(self, app: App) -> App:
        with self.lock:
            self.apps[app.client_id] = app
            return app

    def add_tenant(self, name: str, domain: str | None = None, tenant_id: str | None = None,
                   defender: str = "enabled") -> Tenant:
        tenant_id = (tenant_id or str(uuid.uuid4())).lower()
        uuid.UUID(tenant_id)
        if defender not in ("enabled", "none", "disabled"):
            raise ValueError("defender must be enabled, none or disabled")
        slug = "".join(c for c in name.lower() if c.isalnum())[:20] or "tenant"
        domain = (domain or f"{slug}.onmicrosoft.com").lower()
        with self.lock:
            if tenant_id in self.tenants:
                raise ValueError(f"tenant {tenant_id} exists")
            tenant = Tenant(tenant_id, name, domain, defender,
                            factory=AlertFactory(tenant_id, domain))
            self.tenants[tenant_id] = tenant
            return tenant

    def find_tenant(self, key: str) -> Tenant | None:
        """By GUID or verified domain, as Entra resolves the tenant in a URL."""
        key = key.lower()
        with self.lock:
            if key in self.tenants:
                return self.tenants[key]
            return next((t for t in self.tenants.values() if t.domain == key), None)

    def grant(self, tenant: Tenant, client_id: str, roles: dict[str, list[str]] | None = None
              ) -> None:
        app = self.apps[client_id]
        with self.lock:
            tenant.consents[client_id] = roles if roles is not None else {
                aud: list(r) for aud, r in app.permissions.items()}
            tenant.revoked_at.pop(client_id, None)
            self.consent_changed.set()

    def revoke(self, tenant: Tenant, client_id: str) -> None:
        with self.lock:
            tenant.consents.pop(client_id, None)
            tenant.revoked_at[client_id] = self.clock.now()
            self.consent_changed.set()

    # alerts -----------------------------------------------------------------------------
    def put_alert(self, tenant: Tenant, raw: dict[str, Any]) -> StoredAlert:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ValueError("an alert needs a string 'id'")
        with self.lock:
            self.seq += 1
            existing = tenant.alerts.get(raw["id"])
            stored = StoredAlert(raw, existing.seq if existing else self.seq)
            tenant.alerts[raw["id"]] = stored
            return stored

    def generate(self, tenant: Tenant, count: int, *, same_time: bool = False,
                 evidence_bytes: int = 0, age_seconds: float = 0.0) -> list[dict[str, Any]]:
        """`count` new alerts; with `same_time`, all share one lastUpdateTime."""
        assert tenant.factory
        made = []
        with self.lock:
            shared = self.clock.now_ticks() - int(age_seconds * 10_000_000)
            for _ in range(count):
                now = shared if same_time else (self.clock.now_ticks()
                                                - int(age_seconds * 10_000_000))
                raw = tenant.factory.make(now, evidence_bytes=evidence_bytes)
                if same_time:
                    raw["id"] = f"{raw['id']}{len(made):05d}"
                self.put_alert(tenant, raw)
                made.append(raw)
        return made

    def update_alert(self, tenant: Tenant, alert_id: str, changes: dict[str, Any] | None
                     ) -> dict[str, Any]:
        """Apply `changes` (or the next analyst step) and move lastUpdateTime to now."""
        with self.lock:
            stored = tenant.alerts.get(alert_id)
            if stored is None:
                raise KeyError(alert_id)
            now = self.clock.now_ticks()
            if changes is None:
                assert tenant.factory
                raw = tenant.factory.progress(stored.raw, now)
            else:
                raw = {**stored.raw, "lastUpdateTime": format_ticks(now), **changes}
            stored.raw = raw
            stored.reindex()
            return raw

    def write_alerts(self, tenant: Tenant, alert_ids: list[str], fields: dict[str, Any],
                     by: str) -> list[dict[str, Any]]:
        """An update from the API (PATCH, or batchUpdate's ids): every alert checked
        first, then all changed, or none (KeyError naming the unknown ids,
        alert_updates.Invalid for a bad pair)."""
        with self.lock:
            unknown = [i for i in alert_ids if i not in tenant.alerts]
            if unknown:
                raise KeyError(", ".join(unknown))
            for alert_id in alert_ids:
                alert_updates.check_pair(fields, tenant.alerts[alert_id].raw)
            changed = []
            for alert_id in dict.fromkeys(alert_ids):
                stored = tenant.alerts[alert_id]
                stored.raw = alert_updates.applied(
                    stored.raw, fields, by, format_ticks(self.clock.now_ticks()))
                stored.reindex()
                changed.append(stored.raw)
            return changed

    # Graph security: v2 alerts and incidents ---------------------------------------------
    def _graph_factory(self, tenant: Tenant) -> graph_alerts.GraphAlertFactory:
        if tenant.graph_factory is None:
            tenant.graph_factory = graph_alerts.GraphAlertFactory(
                tenant.id, tenant.domain, seed=len(tenant.graph_alerts))
        return tenant.graph_factory

    def put_graph_alert(self, tenant: Tenant, raw: dict[str, Any]) -> StoredGraphAlert:
        """A v2 alert as given (not an endpoint alert's id: those are the Defender
        world's, seen through the v2 schema)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ValueError("an alert needs a string 'id'")
        with self.lock:
            if raw["id"] in tenant.alerts:
                raise ValueError(f"{raw['id']} is an endpoint alert: change it as one")
            self.seq += 1
            existing = tenant.graph_alerts.get(raw["id"])
            stored = StoredGraphAlert(raw, existing.seq if existing else self.seq)
            tenant.graph_alerts[raw["id"]] = stored
            return stored

    def put_incident(self, tenant: Tenant, raw: dict[str, Any], alert_ids: list[str]
                     ) -> StoredIncident:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
            raise ValueError("an incident needs a string 'id'")
        if not isinstance(alert_ids, list) or not all(isinstance(i, str) for i in alert_ids):
            raise ValueError("alertIds must be a list of alert ids")
        with self.lock:
            self.seq += 1
            existing = tenant.incidents.get(raw["id"])
            stored = StoredIncident(raw, existing.seq if existing else self.seq, alert_ids)
            tenant.incidents[raw["id"]] = stored
            return stored

    def v2_alert(self, tenant: Tenant, alert_id: str) -> dict[str, Any] | None:
        """An alert as Graph serves it, whichever world keeps it."""
        with self.lock:
            if alert_id in tenant.alerts:
                return graph_alerts.from_mde(tenant.alerts[alert_id].raw)
            stored = tenant.graph_alerts.get(alert_id)
            return stored.raw if stored else None

    def generate_graph(self, tenant: Tenant, count: int, products: list[str],
                       per_incident: int = 1, *, same_time: bool = False,
                       age_seconds: float = 0.0) -> tuple[list[dict[str, Any]], list[str]]:
        """`count` alerts of `products` taken in turn (endpoint ones made in the Defender
        world, so both APIs serve them), correlated `per_incident` at a time into new
        incidents. With `same_time`, all share one lastUpdateDateTime. Returns (the
        alerts in the v2 schema, the incident ids)."""
        assert tenant.factory
        unknown = sorted(set(products) - set(graph_alerts.PRODUCTS))
        if not products or unknown:
            raise ValueError(f"service_sources: one or more of {graph_alerts.PRODUCTS}")
        made: list[dict[str, Any]] = []
        incidents: list[str] = []
        with self.lock:
            factory = self._graph_factory(tenant)
            shared = self.clock.now_ticks() - int(age_seconds * 10_000_000)
            for start in range(0, count, per_incident):
                self.seq += 1
                incident_id, incident_seq = str(10_000 + self.seq), self.seq
                group = []
                for i in range(start, min(count, start + per_incident)):
                    ticks = shared if same_time else (self.clock.now_ticks()
                                                      - int(age_seconds * 10_000_000))
                    product = products[i % len(products)]
                    if product == graph_alerts.MDE:
                        raw = tenant.factory.make(ticks)
                        raw["incidentId"] = int(incident_id)
                        if same_time:
                            raw["id"] = f"{raw['id']}{i:05d}"
                        self.put_alert(tenant, raw)
                        group.append(graph_alerts.from_mde(raw))
                    else:
                        v2 = factory.make(product, ticks)
                        v2["incidentId"] = incident_id
                        v2["incidentWebUrl"] = graph_alerts.incident_url(incident_id,
                                                                         tenant.id)
                        self.put_graph_alert(tenant, v2)
                        group.append(v2)
                incident = graph_incidents.make(incident_id, tenant.id, group,
                                                group[0]["createdDateTime"])
                tenant.incidents[incident_id] = StoredIncident(
                    incident, incident_seq, [a["id"] for a in group])
                made.extend(group)
                incidents.append(incident_id)
        return made, incidents

    def update_graph_alert(self, tenant: Tenant, alert_id: str,
                           changes: dict[str, Any] | None) -> dict[str, Any]:
        """Apply v2 `changes` (or the next analyst step) to another product's alert and
        move its lastUpdateDateTime to now."""
        with self.lock:
            stored = tenant.graph_alerts.get(alert_id)
            if stored is None:
                raise KeyError(alert_id)
            now = self.clock.now_ticks()
            if changes is None:
                raw = self._graph_factory(tenant).progress(stored.raw, now)
            else:
                raw = {**stored.raw, "lastUpdateDateTime": format_ticks(now), **changes}
            stored.raw = raw
            stored.reindex()
            return raw

    def write_graph_alert(self, tenant: Tenant, alert_id: str, fields: dict[str, Any],
                          comment: str | None, by: str) -> None:
        """An update through Graph (PATCH, or a comment). An endpoint alert is Defender's:
        changed there, in Defender's spelling, so `/api/alerts` and Graph show one state
        (KeyError unknown; alert_updates.Invalid for a pair Defender refuses)."""
        with self.lock:
            if alert_id in tenant.alerts:
                mde = graph_updates.to_mde(fields)
                if comment is not None:
                    mde["comment"] = comment
                alert_updates.check_pair(mde, tenant.alerts[alert_id].raw)
                stored = tenant.alerts[alert_id]
                stored.raw = alert_updates.applied(stored.raw, mde, by,
                                                   format_ticks(self.clock.now_ticks()))
                stored.reindex()
                return
            other = tenant.graph_alerts.get(alert_id)
            if other is None:
                raise KeyError(alert_id)
            other.raw = graph_updates.applied(other.raw, fields, comment, by,
                                              format_ticks(self.clock.now_ticks()))
            other.reindex()

    def write_incident(self, tenant: Tenant, incident_id: str, fields: dict[str, Any],
                       by: str, comment: str | None = None) -> None:
        """A PATCH of an incident through Graph, or (`comment`) a comment POSTed to it
        (KeyError unknown)."""
        with self.lock:
            stored = tenant.incidents.get(incident_id)
            if stored is None:
                raise KeyError(incident_id)
            stored.raw = {**graph_updates.applied(stored.raw, fields, comment, by,
                                                  format_ticks(self.clock.now_ticks())),
                          "lastModifiedBy": by}
            stored.reindex()

    def update_incident(self, tenant: Tenant, incident_id: str,
                        changes: dict[str, Any] | None) -> dict[str, Any]:
        """Apply `changes` (or assign it: active -> inProgress) to an incident and move
        its lastUpdateDateTime to now."""
        with self.lock:
            stored = tenant.incidents.get(incident_id)
            if stored is None:
                raise KeyError(incident_id)
            now = format_ticks(self.clock.now_ticks())
            if changes is None:
                raw = graph_incidents.progress(stored.raw, now, f"secops@{tenant.domain}")
            else:
                raw = {**stored.raw, "lastUpdateDateTime": now, **changes}
            stored.raw = raw
            stored.reindex()
            return raw

    def touch(self, tenant: Tenant, alert_ids: list[str] | None) -> tuple[str, list[str]]:
        """Move the last update of these alerts (all the tenant's, both worlds, if None)
        to one shared now: many alerts on one lastUpdateDateTime, for paging tests."""
        with self.lock:
            ids = list(alert_ids) if alert_ids is not None else [
                *tenant.alerts, *tenant.graph_alerts]
            unknown = [i for i in ids if i not in tenant.alerts and i not in tenant.graph_alerts]
            if unknown:
                raise KeyError(", ".join(unknown))
            now = format_ticks(self.clock.now_ticks())
            for alert_id in ids:
                if alert_id in tenant.alerts:
                    stored: StoredAlert = tenant.alerts[alert_id]
                    stored.raw = {**stored.raw, "lastUpdateTime": now}
                else:
                    stored = tenant.graph_alerts[alert_id]
                    stored.raw = {**stored.raw, "lastUpdateDateTime": now}
                stored.reindex()
            return now, ids

    # counters ---------------------------------------------------------------------------
    def count_call(self, tenant_id: str) -> None:
        with self.lock:
            self.counters["api_calls"] += 1
            self.calls_by_tenant[tenant_id] += 1
            self.calls_by_minute[tenant_id][int(self.clock.now() // 60) * 60] += 1

    def count_throttled(self, tenant_id: str) -> None:
        with self.lock:
            self.counters["throttled"] += 1
            self.throttled_by_tenant[tenant_id] += 1

    def count_write(self, tenant_id: str, batch: bool) -> None:
        with self.lock:
            (self.batches_by_tenant if batch else self.writes_by_tenant)[tenant_id] += 1

    def snapshot_counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "api_calls": self.counters["api_calls"],
                "throttled": self.counters["throttled"],
                "tokens_issued": self.counters["tokens_issued"],
                "token_errors": self.counters["token_errors"],
                "tenants": {
                    tid: {"calls": self.calls_by_tenant[tid],
                          "calls_per_minute": {str(k): v for k, v in
                                               sorted(self.calls_by_minute[tid].items())},
                          "throttled": self.throttled_by_tenant[tid],
                          "patches": self.writes_by_tenant[tid],
                          "batch_updates": self.batches_by_tenant[tid],
                          "tokens": self.tokens_by_tenant[tid]}
                    for tid in self.tenants},
            }

    def reset_counters(self) -> None:
        with self.lock:
            self.counters.clear()
            self.calls_by_tenant.clear()
            self.calls_by_minute.clear()
            self.throttled_by_tenant.clear()
            self.tokens_by_tenant.clear()
            self.writes_by_tenant.clear()
            self.batches_by_tenant.clear()
