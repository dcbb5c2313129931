"""Four customers whose alerts share indicators, through the whole pipeline: each tenant's
alert is made in the simulator with evidence of our choosing, fetched by the host, relayed
and indexed by the correlate function (nothing is written to the correlation tables from
here). Values are new for each run (Azurite is shared by the session).

  * a file's SHA256 at all 4 customers, its SHA1 at 3 (Alpha, Bravo, Charlie);
  * a public IP at 3; a private one at all 4 (never an indicator);
  * a URL with `<script>` in it (so its domain too) at 2 (Alpha, Bravo);
  * a known-bad tool's file name at 2 (Bravo, Delta), CORRELATION_TOOL_NAMES naming it
    (a name of the module's own: `new_tool`).

Alpha's name and every alert's title carry markup."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
import requests

from shared.correlation.search import indicator_of
from shared.model import Tenant, TenantStatus
from tests.e2e.conftest import FUNCTION_KEY
from tests.integration.devhost_fixtures import wait_for

SOAR_KEY = "e2e-soar-correlation-key"


def new_tool() -> str:
    """A known-bad tool's file name of one test module's own (the setting is the host's,
    and an earlier module's sightings of a shared name would join this one's)."""
    return f"kit-{uuid.uuid4().hex[:8]}.exe"


def settings(tool: str) -> dict[str, str]:
    return {"CORRELATION_TOOL_NAMES": tool,
            "MSSP_API_KEYS": f"soar:{hashlib.sha256(SOAR_KEY.encode()).hexdigest()}"}
NAMES = ("Alpha <b>Corp</b>", "Bravo", "Charlie", "Delta")
TITLE = "Campaign <img src=x onerror=alert(1)> at {}"


def values(tool: str) -> dict[str, str]:
    run = uuid.uuid4().hex
    octet = int(run[:2], 16) % 250 + 1
    return {"sha256": hashlib.sha256(run.encode()).hexdigest(),
            "sha1": hashlib.sha1(run.encode()).hexdigest(),  # noqa: S324 - an indicator
            "ip": f"185.220.{octet}.{int(run[2:4], 16) % 250 + 1}",
            "private_ip": "10.20.30.40",
            "url": f"http://campaign-{run[:8]}.example/dl?id=<script>alert(1)</script>",
            "domain": f"campaign-{run[:8]}.example", "file_name": tool}


def _evidence(n: int, v: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {"entityType": "File", "fileName": "drop.exe", "filePath": "C:\\Users\\Public",
         "sha256": v["sha256"], **({"sha1": v["sha1"]} if n < 3 else {}),
         "detectionStatus": "Detected"},
        {"entityType": "Ip", "ipAddress": v["private_ip"]}]
    if n < 3:
        items.append({"entityType": "Ip", "ipAddress": v["ip"]})
    if n < 2:
        items.append({"entityType": "Url", "url": v["url"]})
    if n in (1, 3):
        items.append({"entityType": "File", "fileName": v["file_name"].upper(),
                      "filePath": "C:\\Temp"})
    return items


def add_customer(app_host, sim, simulator, name: str, evidence: list[dict[str, Any]],
                 severity: str = "High", source: str = "mde") -> tuple[str, str]:
    """One more customer (paused until its alert is in final shape, then active) whose
    one alert has `evidence`, fetched from `source` (graph: GRAPH_BASE_URL set to the
    simulator); (tenant id, alert id)."""
    _, repo = app_host
    tenant_id = sim.add_tenant(name, consent=[simulator.config.client_id])["id"]
    repo.add(Tenant(tenant_id, name, status=TenantStatus.PAUSED, source=source))
    (alert_id,) = sim.generate(tenant_id, 1)["ids"]
    sim.update_alert(tenant_id, alert_id, {"title": TITLE.format(name), "severity": severity,
                                           "status": "New", "evidence": evidence})
    return tenant_id, alert_id


def seed(app_host, sim, simulator, base: str, tool: str,
         sources: tuple[str, ...] = ("mde",) * 4,
         extra_evidence: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """{"tenants": [ids], "names", "alerts": {tenant: alert id}, "values", "indicators"}.
    `sources`: each tenant's (graph needs GRAPH_BASE_URL set to the simulator);
    `extra_evidence`: more evidence of the first tenant's alert."""
    _, repo = app_host
    v = values(tool)
    tenants, alerts = [], {}
    for n, name in enumerate(NAMES):
        evidence = _evidence(n, v) + (list(extra_evidence) if n == 0 else [])
        tenant_id, alert_id = add_customer(app_host, sim, simulator, name, evidence,
                                           ("High", "Medium", "Low", "High")[n], sources[n])
        tenants.append(tenant_id)
        alerts[tenant_id] = alert_id
    for tenant_id in tenants:
        repo.set_status(tenant_id, TenantStatus.ACTIVE, "seeded by a test")
    keyed = {"x-functions-key": FUNCTION_KEY}
    indicators = {kind: indicator_of(value, kind if kind == "file_name" else "")
                  for kind, value in v.items() if kind != "private_ip"}

    def reach(kind: str) -> int:
        found = requests.get(f"{base}/clusters/{kind}", headers=keyed, timeout=10,
                             params={"value": indicators[kind].value})
        return found.json()["reach"] if found.status_code == 200 else 0

    wait_for(lambda: reach("sha256") == 4 and reach("ip") == 3 and reach("url") == 2
             and reach("file_name") == 2, timeout=120, every=1)
    return {"tenants": tenants, "names": dict(zip(tenants, NAMES, strict=True)),
            "alerts": alerts, "values": v, "indicators": indicators}


def module_fixtures() -> tuple[str, Any, Any]:
    """(the module's tool name, its `extra_settings` fixture, its `correlated` fixture:
    the seed, made once per module since the app host lives as long as the module)."""
    tool, seeded = new_tool(), {}

    @pytest.fixture
    def extra_settings() -> dict[str, str]:
        return settings(tool)

    @pytest.fixture
    def correlated(app_host, api, sim, simulator) -> dict[str, Any]:
        if not seeded:
            seeded.update(seed(app_host, sim, simulator, api[0], tool))
        return seeded

    return tool, extra_settings, correlated
