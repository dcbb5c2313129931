"""The real function_app.py on the local host, wired to Azurite and the simulator."""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid

import pytest

from devhost.config import HostConfig, QueueOptions
from devhost.host import Host
from shared.model import TenantStatus
from shared.storage import tables
from shared.storage.tenants import TenantRepository
from tests.conftest import ROOT
from tests.helpers import clear_service_caches
from tests.integration.ingest_fixtures import ingest_env

FUNCTION_KEY = "e2e-function-key"
PORTAL_GROUP = "6f1f8a52-0c4e-4a43-9b1e-5d2b7c9e0a11"  # the SOC analysts' Entra group
PORTAL_ROLE = "Portal.Analyst"
PORTAL_KEY = "e2e-portal-key-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
_clear_caches = clear_service_caches  # each test's host reads its own settings


@pytest.fixture
def extra_settings() -> dict[str, str]:
    """More app settings for the host; a test module overrides this fixture."""
    return {}


@pytest.fixture
def app_host(simulator, sim, storage_env, monkeypatch, extra_settings):
    """function_app.app on the local host: fan-out every 2 s, quick retries; yields
    (host, registry). Other tests' tenants are paused so each test sees its own."""
    env = ingest_env(simulator, storage_env, FETCH_SCHEDULE="*/2 * * * * *",
                     DIGEST_SCHEDULE="*/2 * * * * *", POISON_DRAIN_SCHEDULE="*/2 * * * * *",
                     FETCH_PAGE_SIZE="50", DEVHOST_FUNCTION_KEY=FUNCTION_KEY,
                     DEVHOST_MASTER_KEY="e2e-master-key", MSSP_NAME="Contoso MSSP <Test>",
                     OPS_EMAIL="ops@mssp.example", PORTAL_ALLOWED_GROUPS=PORTAL_GROUP,
                     PORTAL_ALLOWED_ROLES=PORTAL_ROLE, PORTAL_KEY=PORTAL_KEY,
                     SIEM_PUSH_SCHEDULE="*/2 * * * * *", SIEM_SETTLE_SECONDS="5",
                     **extra_settings)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _clear_caches()
    for name in [m for m in sys.modules if m == "function_app" or m.startswith("functions")]:
        monkeypatch.delitem(sys.modules, name)
    config = dataclasses.replace(HostConfig.load(ROOT), queues=QueueOptions(
        max_polling_interval=0.2, visibility_timeout=0, max_dequeue_count=3))
    repo = TenantRepository(tables.table(storage_env, tables.TENANTS))
    for tenant in repo.with_status(TenantStatus.ACTIVE):
        repo.set_status(tenant.tenant_id, TenantStatus.PAUSED, "isolated by a test")
    host = Host(ROOT, "function_app:app", http_port=0, host_id="h" + uuid.uuid4().hex[:8],
                config=config)
    base = host.http.base_url
    monkeypatch.setenv("PUBLIC_BASE_URL", base)
    for client_id in (simulator.config.client_id, simulator.config.triage_client_id):
        sim.add_app(client_id=client_id, redirect_uris=[f"{base}/api/consent/callback"])
    host.start()
    yield host, repo
    host.stop()
    _clear_caches()


@pytest.fixture
def api(app_host):
    """(base URL of /api, a session sending the function key, the tenant registry)."""
    import requests

    host, repo = app_host
    session = requests.Session()
    session.headers["x-functions-key"] = FUNCTION_KEY
    return f"{host.http.base_url}/api", session, repo


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium under Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("the portal's browser tests need Debian's chromium: apt-get install "
                    "chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def global_rules_removed(storage_env):
    """MSSP-wide rules a test made are deleted after it: enabled, they would match every
    later test's alerts (the Azurite of a session is shared)."""
    rules = tables.table(storage_env, "NotifyRules")

    def made() -> set[str]:
        return {r["RowKey"] for r in rules.query_entities(
            "PartitionKey eq @pk", parameters={"pk": "*"}, select=["RowKey"])}

    before = made()
    yield
    for row_key in made() - before:
        rules.delete_entity("*", row_key)
