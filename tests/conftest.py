"""Fixtures shared by every tier: a real Azurite for the session, storage settings per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost.azurite import Azurite
from shared.storage.connection import StorageConnection

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One in-memory Azurite on free ports for the whole run, stopped by its PID."""
    log = tmp_path_factory.mktemp("azurite") / "azurite.log"
    server = Azurite(ROOT, log_path=log).start()
    yield server
    server.stop()


@pytest.fixture
def storage_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> StorageConnection:
    """AzureWebJobsStorage pointing at the session's Azurite, as app settings would."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return StorageConnection.from_env(os.environ, "AzureWebJobsStorage")
pytest_plugins = ["tests.integration.devhost_fixtures"]
