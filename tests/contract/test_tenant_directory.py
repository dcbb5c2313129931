"""The tenant directory's contract, on Azurite and on the in-memory fake: the names and
statuses lists read (one query of name pages) follow every registry change; the registry's
own reads never see the directory's rows; the tenants needing attention are exactly those
the registry says, failing first, whatever recovered since; tenants paged in id order,
each once."""

from __future__ import annotations

import uuid

import pytest

from shared.model import Tenant, TenantStatus
from shared.storage.memory.tenants import MemoryTenants
from shared.storage.tenants import TenantRepository, by_name


@pytest.fixture
def registry(backend):
    return backend.repo(TenantRepository, "Tenants", MemoryTenants)


def _listed(registry):
    return sorted((t.tenant_id, t.display_name, str(t.status))
                  for t in registry.directory())


def _recount(registry):
    return sorted((t.tenant_id, t.display_name, str(t.status)) for t in registry.all())


def _add(registry, name: str, tenant_id: str | None = None) -> Tenant:
    return registry.add(Tenant(tenant_id or str(uuid.uuid4()), name))


def test_an_empty_store_has_no_directory_and_the_first_tenant_makes_one(registry):
    assert registry.directory() is None
    tenant = _add(registry, "Contoso")
    assert _listed(registry) == [(tenant.tenant_id, "Contoso", "active")]
    assert [t.tenant_id for t in registry.all()] == [tenant.tenant_id]  # no directory rows


def test_the_directory_follows_names_and_statuses(registry):
    a, b = _add(registry, "Contoso"), _add(registry, "Fabrikam")
    c = _add(registry, "Woodgrove", "0" + str(uuid.uuid4())[1:])  # a page of its own
    registry.edit(a.tenant_id, display_name="Contoso Ltd")
    registry.pause(b.tenant_id, "asked to")
    registry.stop(c.tenant_id, TenantStatus.CONSENT_REVOKED, "revoked", "AADSTS65001")
    registry.mark_failing(a.tenant_id, "503", 2)  # health only: the listing is unchanged
    saved = registry.get(b.tenant_id)
    saved.display_name = "Fabrikam <Inc>"
    registry.save(saved)
    assert _listed(registry) == _recount(registry)
    assert [n.display_name for n in registry.names()] == ["Contoso Ltd", "Fabrikam <Inc>",
                                                           "Woodgrove"]
    assert registry.names() == by_name(registry.names())


def test_a_merge_of_a_missing_tenant_fails_and_lists_nothing(registry):
    _add(registry, "Contoso")
    with pytest.raises(Exception):  # noqa: B017 (ResourceNotFoundError, as ever)
        registry.pause(str(uuid.uuid4()), "no such tenant")
    assert _listed(registry) == _recount(registry)


def test_tenants_needing_attention_are_exactly_the_registrys_failing_first(registry):
    ok, failing, revoked, paused = (_add(registry, n) for n in ("Ok", "Failing", "Revoked",
                                                                "Paused"))
    recovers = _add(registry, "Recovers")
    registry.mark_failing(failing.tenant_id, "503", 3)
    registry.mark_failing(recovers.tenant_id, "503", 1)
    registry.stop(revoked.tenant_id, TenantStatus.CONSENT_REVOKED, "revoked", "AADSTS65001")
    registry.mark_failing(paused.tenant_id, "503", 1)
    registry.pause(paused.tenant_id, "by the MSSP")
    registry.mark_fetched_ok(recovers.tenant_id)  # one MERGE: the mark stays, checked
    assert [t.display_name for t in registry.needing_attention()] == ["Revoked", "Failing"]
    assert [t.display_name for t in registry.needing_attention()] == ["Revoked", "Failing"]
    registry.resume(paused.tenant_id, "resumed, failing still")
    # most failures first among the failing
    assert [t.display_name for t in registry.needing_attention()] == ["Revoked", "Failing",
                                                                       "Paused"]
    registry.reactivate(revoked.tenant_id, "consent again")
    registry.mark_failing(recovers.tenant_id, "again", 1)  # failing again after recovering
    assert {t.display_name for t in registry.needing_attention()} == {"Paused", "Failing",
                                                                      "Recovers"}
    assert ok.tenant_id not in {t.tenant_id for t in registry.needing_attention()}


def test_tenants_are_paged_in_id_order_each_once(registry):
    added = sorted(_add(registry, f"T{n}").tenant_id for n in range(7))
    seen, after, more = [], "", True
    while more:
        page, more = registry.page(after, 3)
        assert len(page) <= 3
        seen += [t.tenant_id for t in page]
        after = page[-1].tenant_id if page else after
    assert seen == added


def test_a_name_page_larger_than_a_property_is_split_and_read_back(registry):
    names = {}
    for n in range(40):  # one page: ~44,000 characters of names, over two properties
        tid = "c" + str(uuid.uuid4())[1:]
        names[tid] = f"{n:02d} " + "\u00e9\U0001f512x" * 350
        registry.add(Tenant(tid, names[tid]))
    assert {t.tenant_id: t.display_name for t in registry.directory()} == names
