"""PoisonLog and the health summary on the in-memory fakes: a given-up message is kept and
charged to its tenant; the summary counts failing tenants, the last day's poisoned
messages and an app credential refused since the last success."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.messages import FetchRequest
from shared.model import Tenant, TenantStatus
from shared.ops import health
from shared.ops.poison import PoisonLog
from shared.storage.memory.ingest import MemoryAppHealth, MemoryPoisonLog
from shared.storage.memory.tenants import MemoryTenants


def test_a_poisoned_message_is_kept_and_charged_to_its_tenant():
    tenants, rows = MemoryTenants(), MemoryPoisonLog()
    tenant = tenants.add(Tenant(str(uuid.uuid4()), "Contoso"))
    tenants.mark_failing(tenant.tenant_id, "HTTP 503", 5)
    tenants.mark_requeued(tenant.tenant_id)
    log = PoisonLog(rows, tenants)
    body = FetchRequest(tenant.tenant_id).to_message()
    log.record("fetch-requests", body, "fetch failed 5 times")
    (kept,) = log.recent("fetch-requests")
    assert kept["Body"] == body and kept["Tenant"] == tenant.tenant_id
    assert kept["Reason"] == "fetch failed 5 times; last error: HTTP 503"
    saved = tenants.get(tenant.tenant_id)
    assert saved.last_error == kept["Reason"] and saved.fetch_queued_at is None


def test_a_message_of_no_known_tenant_is_kept_all_the_same():
    log = PoisonLog(MemoryPoisonLog(), MemoryTenants())
    log.record("notify-events", "not json", "bad message")
    assert [r["Tenant"] for r in log.recent("notify-events")] == [""]


def test_the_summary_reads_tenants_poison_log_and_the_identity_row():
    tenants, poison, app = MemoryTenants(), MemoryPoisonLog(), MemoryAppHealth()
    ok = tenants.add(Tenant(str(uuid.uuid4()), "Ok"))
    failing = tenants.add(Tenant(str(uuid.uuid4()), "Failing"))
    tenants.add(Tenant(str(uuid.uuid4()), "Paused", status=TenantStatus.PAUSED))
    tenants.mark_fetched_ok(ok.tenant_id)
    tenants.mark_failing(failing.tenant_id, "boom", 2)
    poison.add("fetch-requests", "{}", "old", "", at=datetime.now(UTC) - timedelta(days=2))
    poison.add("fetch-requests", "{}", "new", "")
    summary = health.summarize(tenants, poison, app)
    assert summary["tenants"] == {"active": 2, "paused": 1}
    assert summary["failing_tenants"] == 1
    assert summary["poisoned_last_day"] == {"fetch-requests": 1}
    assert summary["app_credential_error"] is None
    app.identity_failed("bad_client_secret", "refused")
    assert health.summarize(tenants, poison, app)["app_credential_error"]["reason"] == \
        "bad_client_secret"
    app.identity_failed("bad_client_secret", "refused", at=datetime.now(UTC) - timedelta(
        hours=1))  # fixed since: a fetch succeeded after it
    assert health.summarize(tenants, poison, app)["app_credential_error"] is None


def test_the_summary_of_tenants_the_page_already_read_does_not_read_them_again():
    tenants, poison, app = MemoryTenants(), MemoryPoisonLog(), MemoryAppHealth()
    failing = tenants.add(Tenant(str(uuid.uuid4()), "Failing"))
    tenants.mark_failing(failing.tenant_id, "boom", 1)
    read = tenants.all()

    class Unread(MemoryTenants):
        def all(self):  # the overview's second read of the registry, now gone
            raise AssertionError("the registry was read again")

    summary = health.summarize(Unread(), poison, app, known=read)
    assert summary == health.summarize(tenants, poison, app)
    assert summary["failing_tenants"] == 1


def test_the_summary_of_tenants_counted_by_the_directory_reads_no_registry_row():
    tenants, poison, app = MemoryTenants(), MemoryPoisonLog(), MemoryAppHealth()
    failing = tenants.add(Tenant(str(uuid.uuid4()), "Failing"))
    tenants.mark_fetched_ok(failing.tenant_id)
    tenants.mark_failing(failing.tenant_id, "boom", 1)
    tenants.add(Tenant(str(uuid.uuid4()), "Paused", TenantStatus.PAUSED))
    counted = health.Counted({"active": 1, "paused": 1}, 1)

    class Unread(MemoryTenants):
        def all(self):
            raise AssertionError("the registry was read")

    summary = health.summarize(Unread(), poison, app, counted=counted)
    whole = health.summarize(tenants, poison, app)
    assert {k: summary[k] for k in ("tenants", "failing_tenants")} == \
        {k: whole[k] for k in ("tenants", "failing_tenants")}
    # the credential refused: the last success decides, and is read then
    app.identity_failed("bad_client_secret", "AADSTS7000215",
                        at=datetime.now(UTC) - timedelta(days=1))
    assert health.summarize(tenants, poison, app, counted=counted) == whole | {
        "app_credential_error": None}
