"""A small client for the simulator's control API (tests, demo seeding, benchmarks)."""

from __future__ import annotations

from typing import Any

import requests


class SimulatorClient:
    def __init__(self, base_url: str, ca_path: str) -> None:
        self.base_url, self.session = base_url.rstrip("/"), requests.Session()
        # per request: requests lets REQUESTS_CA_BUNDLE override a Session's `verify`
        self.ca_path = ca_path

    def _call(self, method: str, path: str, body: Any = None, expect: int | None = None
              ) -> Any:
        response = self.session.request(method, f"{self.base_url}/_sim{path}", json=body,
                                        timeout=60, verify=self.ca_path)
        if response.status_code >= 400 and expect is None:
            raise RuntimeError(f"simulator {method} {path}: {response.status_code} "
                               f"{response.text}")
        return response.json()

    def add_tenant(self, name: str, *, consent: list[str] | None = None, alerts: int = 0,
                   defender: str = "enabled", tenant_id: str | None = None,
                   domain: str | None = None) -> dict[str, Any]:
        body = {"name": name, "consent": consent or [], "alerts": alerts, "defender": defender}
        if tenant_id:
            body["id"] = tenant_id
        if domain:
            body["domain"] = domain
        return self._call("POST", "/tenants", body)

    def tenant(self, tenant_id: str) -> dict[str, Any]:
        return self._call("GET", f"/tenants/{tenant_id}")

    def set_defender(self, tenant_id: str, state: str) -> dict[str, Any]:
        return self._call("PATCH", f"/tenants/{tenant_id}", {"defender": state})

    def grant(self, tenant_id: str, client_id: str, roles: dict[str, list[str]] | None = None
              ) -> dict[str, Any]:
        body: dict[str, Any] = {"client_id": client_id}
        if roles is not None:
            body["roles"] = roles
        return self._call("POST", f"/tenants/{tenant_id}/consent", body)

    def revoke(self, tenant_id: str, client_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/tenants/{tenant_id}/consent", {"client_id": client_id})

    def add_alerts(self, tenant_id: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant_id}/alerts", alerts)

    def alerts(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/tenants/{tenant_id}/alerts")

    def generate(self, tenant_id: str, count: int, **options: Any) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant_id}/alerts/generate",
                          {"count": count, **options})

    def update_alert(self, tenant_id: str, alert_id: str, changes: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
        return self._call("PATCH", f"/tenants/{tenant_id}/alerts/{alert_id}",
                          changes if changes is not None else {"progress": True})

    def fault(self, tenant_id: str, kind: str, count: int = 1, **options: Any
              ) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant_id}/faults",
                          {"kind": kind, "count": count, **options})

    def clear_faults(self, tenant_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/tenants/{tenant_id}/faults")

    def limits(self, per_minute: int | None = None, per_hour: int | None = None,
               batch: dict[str, int] | None = None, graph: dict[str, int] | None = None
               ) -> dict[str, Any]:
        """Set (or read) the alerts API's limits; `batch`: batchUpdate's per_minute and
        per_hour; `graph`: Graph security API's."""
        body: dict[str, Any] = {k: v for k, v in (("per_minute", per_minute),
                                                  ("per_hour", per_hour)) if v}
        if batch:
            body["batch"] = batch
        if graph:
            body["graph"] = graph
        return self._call("PUT" if body else "GET", "/limits", body or None)

    # Graph security (alerts_v2, incidents) ----------------------------------------------
    def generate_graph(self, tenant_id: str, count: int, service_sources: list[str],
                       alerts_per_incident: int = 1, **options: Any) -> dict[str, Any]:
        """v2 alerts of these products in turn, `alerts_per_incident` to an incident."""
        return self.generate(tenant_id, count, service_sources=service_sources,
                             alerts_per_incident=alerts_per_incident, **options)

    def graph_alerts(self, tenant_id: str) -> list[dict[str, Any]]:
        """Every alert of the tenant as Graph serves it."""
        return self._call("GET", f"/tenants/{tenant_id}/alerts?schema=graph")

    def touch_alerts(self, tenant_id: str, ids: list[str] | None = None) -> dict[str, Any]:
        """One shared lastUpdateDateTime for these alerts (all if None)."""
        return self._call("POST", f"/tenants/{tenant_id}/alerts/touch",
                          {"ids": ids} if ids is not None else {})

    def incidents(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/tenants/{tenant_id}/incidents")

    def add_incidents(self, tenant_id: str, incidents: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/tenants/{tenant_id}/incidents", incidents)

    def update_incident(self, tenant_id: str, incident_id: str,
                        changes: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call("PATCH", f"/tenants/{tenant_id}/incidents/{incident_id}",
                          changes if changes is not None else {"progress": True})

    def graph_settings(self, **settings: Any) -> dict[str, Any]:
        """Set (or read) `page_size` and `next_link_seconds`."""
        return self._call("PUT" if settings else "GET", "/graph", settings or None)

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "/clock", {"advance": seconds})

    def counters(self, reset: bool = False) -> dict[str, Any]:
        return self._call("DELETE" if reset else "GET", "/counters")

    def add_app(self, **body: Any) -> dict[str, Any]:
        return self._call("POST", "/apps", body)

    def mail(self, clear: bool = False) -> list[dict[str, Any]]:
        return self._call("DELETE" if clear else "GET", "/mail")

    def rotate_keys(self, keep_old: bool = True) -> dict[str, Any]:
        return self._call("POST", "/keys/rotate", {"keep_old": keep_old})

    def tamper_next_id_token(self, claims: dict[str, Any] | None = None,
                             drop: list[str] | None = None,
                             foreign_key: bool | str = False) -> dict[str, Any]:
        return self._call("PUT", "/id-token", {"claims": claims or {}, "drop": drop or [],
                                               "foreign_key": foreign_key})
