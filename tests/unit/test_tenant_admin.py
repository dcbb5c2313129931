"""The MSSP's changes to its tenants on the in-memory repositories: which status allows
which change, what each writes, and offboarding that erases a tenant's data only once no
fetch of it runs."""

from __future__ import annotations

import uuid

import pytest

from shared.model import Tenant, TenantStatus
from shared.storage.ingest_state import CURSOR
from shared.storage.memory.tenants import MemoryTenantData, MemoryTenants
from shared.tenants import admin as tenant_admin
from shared.tenants.admin import Conflict, TenantAdmin
from shared.validation import ValidationError


@pytest.fixture
def admin() -> TenantAdmin:
    return TenantAdmin(MemoryTenants(), MemoryTenantData())


def _add(admin: TenantAdmin, status: TenantStatus = TenantStatus.ACTIVE,
         name: str = "Contoso") -> Tenant:
    tenant = admin.tenants.add(Tenant(str(uuid.uuid4()), name))
    if status != TenantStatus.ACTIVE:
        admin.tenants.set_status(tenant.tenant_id, status, "set by the test")
    return admin.tenants.get(tenant.tenant_id)


def test_pause_and_resume_an_active_tenant(admin):
    tenant = _add(admin)
    admin.tenants.mark_requeued(tenant.tenant_id)
    paused = admin.pause(tenant)
    assert (paused.status, paused.status_reason) == (TenantStatus.PAUSED, "paused by the MSSP")
    assert paused.fetch_queued_at is None  # fan-out decides anew on resume
    with pytest.raises(Conflict, match="only an active tenant"):
        admin.pause(paused)
    resumed = admin.resume(paused)
    assert (resumed.status, resumed.status_reason) == (TenantStatus.ACTIVE,
                                                       "resumed by the MSSP")
    with pytest.raises(Conflict):
        admin.resume(resumed)


def test_an_unavailable_tenant_can_be_resumed(admin):
    tenant = _add(admin, TenantStatus.UNAVAILABLE)
    assert admin.resume(tenant).status == TenantStatus.ACTIVE


@pytest.mark.parametrize("status", [TenantStatus.CONSENT_REVOKED, TenantStatus.OFFBOARDED])
def test_a_revoked_or_offboarded_tenant_needs_consent_again(admin, status):
    tenant = _add(admin, status)
    with pytest.raises(Conflict, match="consent again"):
        admin.resume(tenant)
    with pytest.raises(Conflict):
        admin.pause(tenant)
    assert admin.tenants.get(tenant.tenant_id).status == status


def test_offboarding_keeps_the_alerts_unless_asked(admin):
    tenant = _add(admin)
    admin.data.put(tenant.tenant_id, ["a1", "a2"], [CURSOR])
    offboarded, deleted = admin.offboard(tenant, delete_alerts=False)
    assert (offboarded.status, offboarded.status_reason, deleted) == (
        TenantStatus.OFFBOARDED, "offboarded by the MSSP", 0)
    assert admin.has_cursor(tenant.tenant_id)
    again, deleted = admin.offboard(offboarded, delete_alerts=False)  # nothing to do
    assert deleted == 0 and again.status_changed_at == offboarded.status_changed_at


def test_offboarding_with_delete_erases_only_that_tenants_data(admin):
    tenant, other = _add(admin), _add(admin, name="Other")
    admin.data.put(tenant.tenant_id, ["a1", "a2", "a2%~1"], [CURSOR, "budget"])
    admin.data.put(other.tenant_id, ["b1"], [CURSOR])
    offboarded, deleted = admin.offboard(tenant, delete_alerts=True)
    assert deleted == 2
    assert offboarded.status_reason == "offboarded by the MSSP; alerts deleted"
    assert not admin.has_cursor(tenant.tenant_id) and admin.has_cursor(other.tenant_id)
    assert admin.data.lock(tenant.tenant_id, "a later fetch", 60)  # the lease was released
    # an offboarded tenant's alerts can still be deleted later
    admin.data.unlock(tenant.tenant_id, "a later fetch")
    admin.data.put(tenant.tenant_id, ["late"])
    assert admin.offboard(offboarded, delete_alerts=True)[1] == 1


def test_offboarding_waits_for_a_running_fetch(admin, monkeypatch):
    tenant = _add(admin)
    admin.data.put(tenant.tenant_id, ["a1"])
    assert admin.data.lock(tenant.tenant_id, "fetch-worker", 600)
    waits = []

    def sleep(seconds):  # the fetch finishes while offboarding waits
        waits.append(seconds)
        admin.data.unlock(tenant.tenant_id, "fetch-worker")

    monkeypatch.setattr(tenant_admin.time, "sleep", sleep)
    assert admin.offboard(tenant, delete_alerts=True)[1] == 1 and waits == [0.5]


def test_offboarding_gives_up_on_a_fetch_that_does_not_end(admin, monkeypatch):
    tenant = _add(admin)
    admin.data.put(tenant.tenant_id, ["a1"])
    assert admin.data.lock(tenant.tenant_id, "fetch-worker", 600)
    monkeypatch.setattr(tenant_admin, "LEASE_WAIT_SECONDS", 0)
    monkeypatch.setattr(tenant_admin.time, "sleep", lambda seconds: None)
    with pytest.raises(Conflict, match="still running"):
        admin.offboard(tenant, delete_alerts=True)
    assert admin.tenants.get(tenant.tenant_id).status == TenantStatus.OFFBOARDED
    assert admin.data.erase(tenant.tenant_id) == 1  # nothing was deleted under the fetch


def test_update_renames_or_sets_the_region(admin):
    tenant = _add(admin, name="Old")
    renamed = admin.update(tenant, {"display_name": "New <Name>"})
    assert (renamed.display_name, renamed.region) == ("New <Name>", "")
    moved = admin.update(renamed, {"region": "eu"})
    assert (moved.display_name, moved.region) == ("New <Name>", "eu")
    assert admin.update(moved, {}) is moved
    assert admin.update(moved, {"region": ""}).region == ""


@pytest.mark.parametrize("body", [{"region": "mars"}, {"display_name": None},
                                  {"display_name": ""}, {"status": "active"}, [1]])
def test_a_bad_update_changes_nothing(admin, body):
    tenant = _add(admin, name="Same")
    with pytest.raises(ValidationError):
        admin.update(tenant, body)
    assert admin.tenants.get(tenant.tenant_id).display_name == "Same"
