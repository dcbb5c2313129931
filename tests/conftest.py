"""Fixtures shared by every tier: a real Azurite for the session, storage settings per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite
from devtools.simulator.client import SimulatorClient
from devtools.simulator.server import Simulator, SimulatorConfig
from shared.storage.connection import StorageConnection

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["tests.integration.devhost_fixtures", "tests.integration.ingest_fixtures",
                  "tests.integration.siem_fixtures"]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One in-memory Azurite on free ports for the whole run, stopped by its PID."""
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    server = Azurite(ROOT, log_path=log).start()
    yield server
    server.stop()


@pytest.fixture(params=["fast", "sdk"])
def fast_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """A test run on the lean storage paths, then again with STORAGE_FAST_PATHS=false
    (the SDK's own `submit_transaction` and `send_message`)."""
    monkeypatch.setenv("STORAGE_FAST_PATHS", "true" if request.param == "fast" else "false")
    return request.param == "fast"


@pytest.fixture
def storage_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> StorageConnection:
    """AzureWebJobsStorage pointing at the session's Azurite, as app settings would."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return StorageConnection.from_env(os.environ, "AzureWebJobsStorage")


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """The Entra ID + Defender simulator over HTTPS on loopback, for the whole run."""
    state = tmp_path_factory.mktemp("simulator")
    sim = Simulator(SimulatorConfig(
        ca_path=state / "ca.pem", certificate_path=state / "app-certificate.pem",
        browser_port=0,  # the consent pages also on plain HTTP, as `make run` serves them
        redirect_uris=["https://mssp.example/api/consent/callback"])).start()
    yield sim
    sim.stop()


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[SimulatorClient]:
    """A control-API client; the default rate limits and Graph's listing settings are
    restored after each test."""
    client = SimulatorClient(simulator.base_url, str(simulator.config.ca_path))
    yield client
    client.limits(per_minute=100, per_hour=1500, batch={"per_minute": 10, "per_hour": 500},
                  graph={"per_minute": 150, "per_hour": 9000})
    client.graph_settings(page_size=100, next_link_seconds=600)
