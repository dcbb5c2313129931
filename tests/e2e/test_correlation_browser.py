""""Seen at several customers" in headless Chromium, on the local host with Azurite and
the simulator, after four customers' alerts sharing indicators went through the pipeline
(tests/e2e/correlation_seed.py): the clusters page in both orders, a cluster's page and
its alerts' pages, an alert page's "also seen at", the search box for each kind of
indicator (and a value that is none), and a suppression added and removed. Hostile text
(a tenant name, alert titles, a URL with `<script>`) stays text: no dialog ever opens.

Screenshots go to test-artifacts/correlation/.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.e2e import correlation_seed
from tests.e2e import test_portal_browser as portal_tests

ARTIFACTS = ROOT / "test-artifacts" / "correlation"
TOOL, extra_settings, correlated = correlation_seed.module_fixtures()


@pytest.fixture
def browse(app_host, browser, correlated):
    """(portal base URL, a signed-in page that fails the test on any dialog)."""
    host, _ = app_host
    context = browser.new_context(extra_http_headers={
        "X-MS-CLIENT-PRINCIPAL": portal_tests.principal()})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield f"{host.http.base_url}/api/portal", page
    context.close()
    assert not dialogs, dialogs


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_clusters_a_cluster_its_alerts_and_also_seen_at(browse, correlated):
    base, page = browse
    h = correlated["indicators"]["sha256"]
    page.goto(f"{base}/clusters")
    page.locator("#nav-clusters").click()
    row = page.locator(f'#clusters tr[data-key="{h.key}"]')
    assert row.locator(".reach").inner_text() == "4"
    assert "Alpha <b>Corp</b>" in row.locator(".tenants").inner_text()  # as text
    url_row = page.locator(f'#clusters tr[data-key="{correlated["indicators"]["url"].key}"]')
    assert "%3Cscript%3E" in url_row.inner_text()
    shot(page, "clusters-recent")
    page.locator("#order-reach").click()
    assert page.locator("strong#order-reach").count() == 1
    reaches = [int(r) for r in page.locator("#clusters .reach").all_inner_texts()]
    assert reaches == sorted(reaches, reverse=True) and reaches[0] >= 4
    shot(page, "clusters-reach")
    # the cluster's page: every customer, each alert a link to its page
    page.goto(f"{base}/clusters")
    row.locator("a.cluster-link").click()
    assert page.locator("#c-reach").inner_text() == "4"
    assert page.locator("#cluster-tenants tbody tr").count() == 4
    shot(page, "cluster")
    alpha = correlated["tenants"][0]
    page.locator(f'#cluster-tenants tr[data-tenant="{alpha}"] a.alert-link').click()
    page.wait_for_url(re.compile(rf"/tenants/{alpha}/alerts/"))
    assert page.locator("#alert-title").inner_text().startswith("Campaign <img")
    # the alert page: its indicators, each with how many other customers have it
    table = page.locator("#alert-indicators")
    also = {r.locator("code").inner_text(): r.locator("a").inner_text()
            for r in table.locator("tbody tr").all()}
    assert also[h.value] == "also seen at 3 other customers"
    assert also[correlated["indicators"]["sha1"].value] == "also seen at 2 other customers"
    assert also[correlated["indicators"]["url"].value] == "also seen at 1 other customer"
    assert correlated["values"]["private_ip"] not in also
    shot(page, "alert-also-seen")
    table.locator("tbody tr", has_text=h.value).locator("a").click()
    assert page.locator("#sightings tbody tr").count() == 4
    assert page.locator("#l-cluster").is_visible()
    shot(page, "lookup-from-alert")


def test_search_each_kind_and_a_value_that_is_none(browse, correlated):
    base, page = browse
    pasted = {"sha256": correlated["values"]["sha256"].upper(),
              "sha1": f"  {correlated['values']['sha1']}  ",
              "ip": correlated["values"]["ip"],
              "domain": correlated["values"]["domain"].upper() + ".",
              "url": correlated["values"]["url"], "file_name": TOOL.upper()}
    counts = {"sha256": 4, "sha1": 3, "ip": 3, "domain": 2, "url": 2, "file_name": 2}
    page.goto(f"{base}/clusters")
    for kind, value in pasted.items():
        if kind == "file_name":  # never detected: asked for by kind
            page.locator("#lookup-q").fill(value)
            page.locator("#lookup-kind").select_option(kind)
            page.locator("#lookup-find").click()
        else:  # the nav's box, on whatever page is open
            page.locator("#nav-q").fill(value)
            page.locator("#nav-search button").click()
        assert page.locator("#l-value").inner_text() == \
            correlated["indicators"][kind].value, kind
        rows = page.locator("#sightings tbody tr")
        assert rows.count() == counts[kind], kind
        assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.tenant)")) <= set(
            correlated["tenants"])
        shot(page, f"lookup-{kind}")
    page.locator("#lookup-q").fill("hello world")
    page.locator("#lookup-kind").select_option("")
    with page.expect_response(lambda r: "/lookup?" in r.url) as answer:
        page.locator("#lookup-find").click()
    assert answer.value.status == 400
    assert "This is not an indicator" in page.locator("#lookup-error").inner_text()
    shot(page, "lookup-not-an-indicator")


def test_suppress_and_remove_an_indicator(browse, correlated):
    base, page = browse
    ip = correlated["indicators"]["ip"]
    page.goto(f"{base}/clusters/ip?value={ip.value}")
    page.locator("#suppress-link").click()
    assert page.locator("#s-value").input_value() == ip.value
    page.locator("#s-reason").fill("our own scanner <script>alert(1)</script>")
    page.locator("#suppress").click()
    assert "suppressed" in page.locator("#done").inner_text()
    row = page.locator(f'#suppressions tr[data-key="{ip.key}"]')
    assert "analyst@mssp.example" in row.inner_text()
    assert "<script>alert(1)</script>" in row.inner_text()  # as text
    shot(page, "suppressed")
    page.goto(f"{base}/clusters")
    assert page.locator(f'#clusters tr[data-key="{ip.key}"]').count() == 0
    assert page.goto(f"{base}/clusters/ip?value={ip.value}").status == 404
    page.goto(f"{base}/suppressions")
    page.locator(f'#suppressions tr[data-key="{ip.key}"] button').click()
    assert "removed" in page.locator("#done").inner_text()
    assert page.locator(f'#suppressions tr[data-key="{ip.key}"]').count() == 0
    assert page.goto(f"{base}/clusters/ip?value={ip.value}").status == 200
    shot(page, "unsuppressed")
