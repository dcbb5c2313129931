"""The health report against a real Azurite and against storage that is down."""

from __future__ import annotations

from shared import health
from shared.config import Settings, SettingsError
from shared.storage.connection import azurite_connection_string
from tests.helpers import settings


def test_healthy_when_storage_answers(storage_env):
    healthy, body = health.report(
        lambda: settings(AzureWebJobsStorage=storage_env.connection_string))
    assert healthy
    assert body["status"] == "healthy"
    assert body["checks"]["queues"]["ok"] and body["checks"]["tables"]["ok"]
    assert body["versions"]["azure-data-tables"] != "missing"


def test_unhealthy_when_storage_is_down_and_no_secret_in_the_report():
    dead = azurite_connection_string(queue=1, table=1, blob=1)
    healthy, body = health.report(lambda: settings(AzureWebJobsStorage=dead))
    assert not healthy
    assert body["status"] == "unhealthy"
    assert body["checks"]["queues"]["ok"] is False
    assert body["checks"]["tables"]["error"]
    assert "AccountKey" not in str(body)


def test_bad_settings_are_reported_by_name():
    def broken() -> Settings:
        raise SettingsError("AzureWebJobsStorage", "is not set")

    healthy, body = health.report(broken)
    assert not healthy
    assert "AzureWebJobsStorage" in body["checks"]["settings"]["error"]
