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
    assert set(body["ingestion"]) == {"tenants", "failing_tenants", "last_success_at",
                                      "app_credential_error", "poisoned_last_day"}


def test_health_reports_tenants_by_status_and_a_current_app_credential_error(storage_env):
    import uuid
    from datetime import UTC, datetime

    from shared.model import Tenant, TenantStatus
    from shared.storage import tables
    from shared.storage.tenants import TenantRepository

    repo = TenantRepository(tables.table(storage_env, tables.TENANTS))
    before = health.ingestion_summary(storage_env)
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Health Co"))
    repo.merge(tenant_id, consecutive_failures=2)
    tables.table(storage_env, tables.APP_HEALTH).upsert_entity(
        {"PartitionKey": "app", "RowKey": "identity", "Reason": "bad_client_secret",
         "At": datetime.now(UTC)})
    after = health.ingestion_summary(storage_env)
    assert after["tenants"]["active"] == before["tenants"].get("active", 0) + 1
    assert after["failing_tenants"] == before["failing_tenants"] + 1
    assert after["app_credential_error"]["reason"] == "bad_client_secret"
    repo.merge(tenant_id, last_success_at=datetime.now(UTC), consecutive_failures=0)
    assert health.ingestion_summary(storage_env)["app_credential_error"] is None
    repo.set_status(tenant_id, TenantStatus.OFFBOARDED, "test done")


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


def test_health_counts_poisoned_messages_of_the_last_day(storage_env):
    from shared.poison import PoisonLog

    before = health.ingestion_summary(storage_env)["poisoned_last_day"].get("notify-events", 0)
    PoisonLog(storage_env).record("notify-events", "{}", "smtp down for hours")
    after = health.ingestion_summary(storage_env)["poisoned_last_day"]["notify-events"]
    assert after == before + 1


def test_a_bad_siem_output_is_reported_by_field_and_its_secret_never(storage_env):
    import json

    bad = json.dumps([{"name": "splunk", "type": "splunk_hec", "url": "http://splunk.example/"}])
    healthy, body = health.report(lambda: settings(
        AzureWebJobsStorage=storage_env.connection_string, SIEM_OUTPUTS=bad,
        SIEM_HEC_TOKEN="hec-secret-value"))
    assert not healthy
    assert "SIEM_OUTPUTS[0].url" in body["checks"]["settings"]["error"]
    assert "hec-secret-value" not in json.dumps(body)
    good = json.dumps([{"name": "splunk", "type": "splunk_hec",
                        "url": "https://splunk.example/services/collector/event"}])
    healthy, body = health.report(lambda: settings(
        AzureWebJobsStorage=storage_env.connection_string, SIEM_OUTPUTS=good,
        SIEM_HEC_TOKEN="hec-secret-value"))
    assert healthy and body["siem_outputs"][0]["name"] == "splunk"
    assert "hec-secret-value" not in json.dumps(body)
