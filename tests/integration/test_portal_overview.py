"""The paged overview on Azurite: every tenant needing attention on every page, failing
first, then the others 100 a page in id order, each exactly once across "Next tenants";
each row's counts from its summary; the health panel's counts from the directory."""

from __future__ import annotations

import re
import uuid
from html import unescape
from urllib.parse import parse_qs, urlsplit

from shared.model import Tenant, TenantStatus
from shared.portal.pages import OVERVIEW_PAGE, Portal, Request
from shared.storage.memory.tenants import MemoryNotices
from shared.storage.tenant_summaries import Counts, TenantSummaries
from shared.storage.tenants import TenantRepository
from shared.tenants.admin import TenantAdmin
from shared.tenants.ops_notices import OpsNotices
from tests.contract.conftest import fresh_table
from tests.helpers import settings

KEY = "overview-test-key-0123456789"


def _portal(storage_env, registry: TenantRepository, summaries: TenantSummaries) -> Portal:
    app = settings(AzureWebJobsStorage=storage_env.connection_string or "", PORTAL_KEY=KEY)
    return Portal(app, TenantAdmin(registry, None), None, None, None,  # type: ignore[arg-type]
                  OpsNotices(MemoryNotices(), ""), None, None,  # type: ignore[arg-type]
                  alert_index=None, summaries=summaries)  # type: ignore[arg-type]


def _view(portal: Portal, after: str = "") -> tuple[list[str], str, str]:
    """(the tenant ids of the table's rows, the next page's `after`, the page)."""
    response = portal.overview(Request("GET", {"host": "127.0.0.1:7071", "x-portal-key": KEY},
                                       params={"after": after} if after else {}))
    assert response.status == 200, response.body[:300]
    table = response.body[response.body.index('id="tenants"'):]
    table = table[:table.index("</table>")]
    following = re.search(r'id="next-tenants" href="([^"]*)"', response.body)
    nxt = parse_qs(urlsplit(unescape(following.group(1))).query)["after"][0] if following \
        else ""
    return re.findall(r'data-tenant="([^"]+)"', table), nxt, response.body


def test_the_overview_pages_tenants_once_each_needing_attention_first(storage_env):
    registry = TenantRepository(fresh_table(storage_env, "OverviewTenants"))
    summaries = TenantSummaries(fresh_table(storage_env, "OverviewSummaries"))
    ids = [registry.add(Tenant(str(uuid.uuid4()), f"Tenant {n:03d}")).tenant_id
           for n in range(OVERVIEW_PAGE * 2 + 30)]
    failing, revoked, recovered, paused = ids[7], ids[150], ids[201], ids[60]
    registry.mark_failing(failing, "HTTP 503", 3)
    registry.stop(revoked, TenantStatus.CONSENT_REVOKED, "revoked", "AADSTS65001")
    registry.mark_failing(recovered, "HTTP 503", 1)
    registry.mark_fetched_ok(recovered)  # its mark stays: the overview checks it
    registry.pause(paused, "by the MSSP")
    summaries.publish(ids[180], Counts({"High": 4, "Low": 1}, {}, 1))
    portal = _portal(storage_env, registry, summaries)

    shown: list[str] = []
    after, pages = "", 0
    while True:
        rows, after, body = _view(portal, after)
        pages += 1
        assert rows[:2] == [revoked, failing]  # on every page, revoked then failing
        shown += rows[2:]
        if ids[180] in rows:
            row = body[body.index(f'data-tenant="{ids[180]}"'):]
            assert re.findall(r'<td class="num">(?:<a[^>]*>)?(\d+)', row)[:4] == \
                ["4", "0", "1", "0"]
        if not after:
            break
    assert pages == 3
    assert sorted(shown) == sorted(set(ids) - {revoked, failing})  # each once
    assert len(shown) == len(set(shown))
    assert 'data-reason="tenants_failing"' in body  # one failing: counted from the marks


def test_a_store_without_the_directory_shows_every_tenant_on_one_page(storage_env):
    registry = TenantRepository(fresh_table(storage_env, "OverviewTenants"))
    summaries = TenantSummaries(fresh_table(storage_env, "OverviewSummaries"))
    ids = [registry.add(Tenant(str(uuid.uuid4()), f"Old {n}")).tenant_id for n in range(5)]
    registry.client.delete_entity("tenant", "~names:~")  # as a store from before it
    rows, after, body = _view(_portal(storage_env, registry, summaries))
    assert sorted(rows) == sorted(ids) and after == ""
    assert 'id="tenant-paging"' not in body
