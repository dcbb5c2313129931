"""The health report against a real Azurite and against storage that is down."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.azurite import Azurite
from shared.config import Settings, SettingsError
from shared.ops import health
from shared.storage.connection import StorageConnection, azurite_connection_string
from tests.conftest import ROOT
from tests.helpers import settings


@pytest.fixture(scope="module")
def own_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageConnection]:
    """An Azurite of this module alone: "healthy" needs no other test's failing tenants."""
    server = Azurite(ROOT, log_path=tmp_path_factory.mktemp("azurite-health") / "log").start()
    yield StorageConnection.from_env({"AzureWebJobsStorage": server.connection_string},
                                     "AzureWebJobsStorage")
    server.stop()


def test_healthy_when_storage_answers(own_storage):
    healthy, body = health.report(
        lambda: settings(AzureWebJobsStorage=own_storage.connection_string))
    assert healthy
    assert body["status"] == "healthy" and body["reasons"] == []
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
    from shared.services import poison_log_on

    before = health.ingestion_summary(storage_env)["poisoned_last_day"].get("notify-events", 0)
    poison_log_on(storage_env).record("notify-events", "{}", "smtp down for hours")
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


# Each fault: (settings overrides, make it happen, clear it) against the module's Azurite.
def _tenant_failing(storage: StorageConnection, ctx: dict[str, Any]) -> Callable[[], None]:
    from shared.model import Tenant
    from shared.storage import tables
    from shared.storage.tenants import TenantRepository

    repo = TenantRepository(tables.table(storage, tables.TENANTS))
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Failing Co"))
    repo.merge(tenant_id, consecutive_failures=3, last_error="Defender 503",
               last_error_at=datetime.now(UTC))
    return lambda: repo.merge(tenant_id, consecutive_failures=0,
                              last_success_at=datetime.now(UTC))


def _poisoned(storage: StorageConnection, ctx: dict[str, Any]) -> Callable[[], None]:
    from shared.services import poison_log_on

    log = poison_log_on(storage)
    key = log.record("fetch-requests", "{}", "gave up")
    return lambda: log.rows.client.delete_entity("fetch-requests", key)


def _mail_down(storage: StorageConnection, ctx: dict[str, Any]) -> Callable[[], None]:
    from shared.notify.rules import parse_rule
    from shared.notify.transport import SmtpTransport, Transient
    from shared.services import notifier_for
    from tests.integration.test_notify import Inbox, Server, _event

    server = Server(Inbox())  # never started: its port is closed
    notifier = notifier_for(ctx["settings"], SmtpTransport("127.0.0.1", server.port, "none",
                                                       timeout=5))
    tenant = str(uuid.uuid4())
    notifier.rules.save(parse_rule({"name": "r", "recipients": ["soc@mssp.example"]}, tenant))
    with pytest.raises(Transient):
        notifier.handle(_event(tenant))

    def clear() -> None:
        server.start()
        try:
            assert notifier.handle(_event(tenant)).sent == 1
        finally:
            server.stop()
    return clear


def _siem_failing(storage: StorageConnection, ctx: dict[str, Any]) -> Callable[[], None]:
    from shared.services import siem_delivery_on
    from shared.siem.outputs import parse_outputs
    from shared.storage.siem_delivery import PK
    from tests.integration.siem_fixtures import event, feed_for

    hec, output = ctx["hec"], ctx["output"]
    delivery = siem_delivery_on(storage, feed_for(storage), parse_outputs(
        json.dumps([output]), {"SIEM_HEC_TOKEN": "x"}))
    assert delivery.deliver(output["name"]).status == "idle"  # its state starts now
    hec.answer = {"text": "Invalid token", "code": 4}
    delivery.feed.append(event(output["tenants"][0], 1))
    import time
    time.sleep(1.1)  # past the feed's settle time
    assert delivery.deliver(output["name"]).status == "failed"

    def clear() -> None:
        hec.answer = {"text": "Success", "code": 0}
        delivery.states.client.update_entity({"PartitionKey": PK, "RowKey": output["name"],
                                              "RetryAt": datetime.now(UTC) - timedelta(
                                                  seconds=1)})
        assert delivery.deliver(output["name"]).status == "delivered"
    return clear


@pytest.mark.parametrize(("fault", "code"), [
    (_tenant_failing, "tenants_failing"), (_poisoned, "messages_poisoned"),
    (_mail_down, "mail_failing"), (_siem_failing, "siem_output_failing")])
def test_degraded_with_the_reason_under_each_fault_and_healthy_once_it_clears(
        own_storage, receiver, fault, code):
    hec = receiver()
    output = {"name": f"hec-{uuid.uuid4().hex[:6]}", "type": "splunk_hec", "url": hec.url,
              "tenants": [str(uuid.uuid4())]}
    ctx: dict[str, Any] = {"hec": hec, "output": output, "settings": settings(
        AzureWebJobsStorage=own_storage.connection_string, SIEM_HEC_TOKEN="hec-secret-value",
        SIEM_OUTPUTS=json.dumps([output]), MAIL_FROM="alerts@mssp.example")}
    report: Callable[[], tuple[bool, dict[str, Any]]] = lambda: health.report(  # noqa: E731
        lambda: ctx["settings"])
    assert report()[1]["status"] == "healthy"
    clear = fault(own_storage, ctx)
    up, body = report()
    assert up and body["status"] == "degraded"
    assert [r["code"] for r in body["reasons"]] == [code]
    assert "hec-secret-value" not in json.dumps(body)
    clear()
    assert report()[1]["status"] == "healthy"
