"""The portal's "Seen at several customers" pages on a fake CorrelationReads: the
clusters by recency and reach (keyset paged), a cluster's page linking to every alert, the
search box for each indicator kind (a value that is no indicator: a 400 saying why), the
alert page's "also seen at", and the suppression list (CSRF, the action role, the signed-in
user as author). Every indicator value, tenant name and alert title is hostile text."""

from __future__ import annotations

import base64
import json
import re
from html import unescape
from html.parser import HTMLParser
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.correlation.model import Indicator
from shared.correlation.search import indicator_of
from shared.model import Tenant
from shared.portal import auth, cluster_pages
from shared.portal.pages import Portal, Request
from shared.storage.alert_rows import alert_rows
from shared.storage.memory.alert_index import MemoryAlertIndex
from shared.storage.memory.ingest import MemoryAlerts, MemoryRuns
from shared.storage.memory.notify import MemoryMailOutbox, MemoryRules
from shared.storage.memory.tenants import MemoryTenantData, MemoryTenants
from shared.tenants.admin import TenantAdmin
from tests.alert_docs import ALERT_ID, mde_alert
from tests.correlation_fakes import FakeCorrelation
from tests.helpers import settings

PUBLIC, HOST, KEY = "http://127.0.0.1:7071", "127.0.0.1:7071", "local-key-0123456789"
GROUP, ACTORS = "g-portal", "g-actors"
T1, T2, T3 = ("3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b", "9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a",
              "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d")
XSS = "<script>alert(1)</script>"
ONERROR = '"><img src=x onerror=alert(2)>'
SHA256 = indicator_of("b" * 64)
SHA1 = indicator_of("a" * 40)
IP = indicator_of("185.1.2.3")
DOMAIN = indicator_of("evil.example")
URL = indicator_of(f"http://evil.example/{XSS}?q={ONERROR}")  # escaped by the normaliser
JS = Indicator("url", f"javascript:alert(3)//{XSS}")  # as if stored so: text, never a link
TOOL = indicator_of(f"{ONERROR}.exe", "file_name")  # a file name keeps < > " as they are


class Hub:
    def __init__(self, wired: bool = True) -> None:
        self.settings = settings(PUBLIC_BASE_URL=PUBLIC, PORTAL_KEY=KEY,
                                 PORTAL_ALLOWED_GROUPS=f"{GROUP},{ACTORS}",
                                 PORTAL_ACTION_GROUPS=ACTORS)
        self.tenants = MemoryTenants()
        for tid, name in ((T1, f"Contoso {XSS}"), (T2, "Fabrikam"), (T3, "Northwind")):
            self.tenants.add(Tenant(tid, name))
        self.alerts = MemoryAlerts()
        self.alerts.store(alert_rows(T1, mde_alert(title=f"Hidden {XSS}")))
        self.reads = seeded()
        self.portal = Portal(self.settings, TenantAdmin(self.tenants, MemoryTenantData()),
                             MemoryRules(), MemoryMailOutbox(),
                             SimpleNamespace(list_invitations=list, link=str,
                                             why_not_triage=lambda: ""), None,
                             self.alerts, MemoryRuns(), alert_index=MemoryAlertIndex(),
                             correlation=self.reads if wired else None)

    def headers(self, who: str = "key", **extra: str) -> dict[str, str]:
        headers = {"host": HOST, **extra}
        if who == "key":
            headers[auth.KEY_HEADER] = KEY
        else:
            groups = [GROUP] + ([ACTORS] if who == "actor" else [])
            claims = [{"typ": "preferred_username", "val": f"{who}@mssp.example"},
                      {"typ": "oid", "val": f"oid-{who}"}] + [
                {"typ": "groups", "val": g} for g in groups]
            headers[auth.PRINCIPAL_HEADER] = base64.b64encode(
                json.dumps({"claims": claims}).encode()).decode()
        return headers

    def get(self, view: str, who: str = "key", route: dict[str, str] | None = None,
            **params: str):
        views = self.portal.cluster_views
        handler = {"clusters": views.list_page, "cluster": views.cluster_page,
                   "lookup": views.lookup_page, "suppressions": views.suppressions_page,
                   "alert": self.portal.alert}[view]
        return handler(Request("GET", self.headers(who), params=params, route=route or {}))

    def follow(self, link: str, view: str):
        parts = urlsplit(unescape(link))
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = {"kind": parts.path.rsplit("/", 1)[1]} if view == "cluster" else {}
        return self.get(view, route=route, **params)

    def post(self, view: str, form: dict[str, str], who: str = "key", csrf: bool = True):
        principal = auth.authenticate(self.settings.portal, self.headers(who))
        token = auth.csrf_token(self.settings.portal, principal) if csrf else "forged"
        views = self.portal.cluster_views
        handler = {"add": views.suppressions_page, "remove": views.suppression_remove}[view]
        return handler(Request("POST", self.headers(who, origin=PUBLIC),
                               form={**form, "csrf": token}))


def seeded() -> FakeCorrelation:
    """URL and the hashes at 3 tenants, IP and DOMAIN at 2, the tool at 2, JS at 2; the
    newest sighting is the IP's."""
    reads = FakeCorrelation()
    day = "2026-12-0{}T10:00:00.0000000Z"
    for n, tid, name in ((1, T1, f"Contoso {XSS}"), (2, T2, "Fabrikam"),
                         (3, T3, "Northwind")):
        for indicator in (URL, SHA256, SHA1):
            reads.see(indicator, tid, name, f"da{n}_{indicator.kind}", day.format(n),
                      "High" if n == 1 else "Low", f"Alert {n} {ONERROR}")
    for indicator, n in ((IP, 4), (DOMAIN, 3), (TOOL, 2), (JS, 1)):
        reads.see(indicator, T1, f"Contoso {XSS}", ALERT_ID, day.format(n), "Medium",
                  f"Hidden {XSS}")
        reads.see(indicator, T2, "Fabrikam", f"db{n}", day.format(n), "High", "Other")
    return reads


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_safe(body: str) -> None:
    """Hostile text stays text: no element, attribute or link of its making."""
    parser = _Tags()
    parser.feed(body)
    tags = {tag for tag, _ in parser.found}
    assert not tags & {"script", "img", "iframe", "svg"}, tags
    for tag, attrs in parser.found:
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "action", "src"):
                assert not (value or "").strip().lower().startswith("javascript"), value


def rows(body: str, table: str) -> list[str]:
    found = re.search(rf'<table id="{table}">.*?</table>', body, re.S)
    assert found, table
    return re.findall(r"<tr[ >].*?</tr>", found.group(0).split("<tbody>")[1], re.S)


# the clusters page -----------------------------------------------------------------------

def test_clusters_by_recency_and_reach_with_their_tenants_and_hostile_text_as_text():
    hub = Hub()
    page = hub.get("clusters")
    assert page.status == 200
    assert_safe(page.body)
    listed = rows(page.body, "clusters")
    assert len(listed) == 7
    assert IP.key in listed[0]  # the newest sighting first
    text = unescape(page.body)
    assert URL.value in text and JS.value in text and f"Contoso {XSS}" in text
    assert "High 1 · Low 2" in text  # the URL's alerts by severity, worst first
    by_reach = rows(hub.get("clusters", order="reach").body, "clusters")
    assert {URL.key, SHA256.key, SHA1.key} == {
        re.search(r'data-key="([^"]+)"', r).group(1) for r in by_reach[:3]}
    assert all(re.search(r'class="num reach">3<', r) for r in by_reach[:3])
    # each indicator links to its cluster page, each tenant to its page
    link = re.search(rf'data-key="{URL.key}".*?class="cluster-link" href="([^"]+)"',
                     page.body, re.S).group(1)
    assert hub.follow(link, "cluster").status == 200
    assert f'href="/api/portal/tenants/{T2}"' in listed[0]


def test_the_clusters_page_is_keyset_paged(monkeypatch):
    monkeypatch.setattr(cluster_pages, "CLUSTERS_PAGE", 3)
    hub = Hub()
    seen: list[str] = []
    page = hub.get("clusters", order="reach")
    while True:
        seen += re.findall(r'<tr data-key="([^"]+)"', page.body)
        following = re.search(r'<a href="([^"]+)" id="next">', page.body)
        if not following:
            break
        assert "cursor=" in following.group(1) and "order=reach" in following.group(1)
        page = hub.follow(following.group(1), "clusters")
        assert 'id="first"' in page.body
    assert len(seen) == len(set(seen)) == 7
    assert hub.get("clusters", cursor="not-a-cursor").status == 400
    assert hub.get("clusters", cursor="x" * 5000).status == 400
    assert hub.get("clusters", order="<b>").status == 200  # an unknown order: recent


def test_nothing_of_correlation_shows_where_it_is_not_wired():
    hub = Hub(wired=False)
    for view in ("clusters", "lookup", "suppressions"):
        assert hub.get(view).status == 404
    alert = hub.get("alert", route={"tenant_id": T1, "alert_id": ALERT_ID})
    assert alert.status == 200 and 'id="alert-indicators"' not in alert.body
    assert 'id="nav-clusters"' not in alert.body and 'id="nav-search"' not in alert.body


def test_a_stranger_sees_none_of_it():
    views = Hub().portal.cluster_views
    for handler in (views.list_page, views.cluster_page, views.lookup_page,
                    views.suppressions_page, views.suppression_remove):
        response = handler(Request("GET", {"host": HOST}, params={"q": URL.value},
                                   route={"kind": "url"}))
        assert response.status == 401 and "evil.example" not in response.body


# a cluster's page --------------------------------------------------------------------------

def test_a_cluster_page_lists_every_tenant_and_links_each_alert():
    hub = Hub()
    page = hub.get("cluster", route={"kind": "url"}, value=URL.value)
    assert page.status == 200
    assert_safe(page.body)
    tenants = rows(page.body, "cluster-tenants")
    assert len(tenants) == 3
    links = re.findall(r'class="alert-link" href="([^"]+)"', page.body)
    assert sorted(links) == sorted(f"/api/portal/tenants/{t}/alerts/da{n}_url"
                                   for n, t in ((1, T1), (2, T2), (3, T3)))
    assert 'id="c-reach">3<' in page.body and "Fabrikam" in page.body
    lookup = re.search(r'<a href="([^"]+)" id="every-sighting"', page.body).group(1)
    assert len(rows(hub.follow(lookup, "lookup").body, "sightings")) == 3


def test_a_cluster_page_for_what_is_no_cluster_or_no_indicator():
    hub = Hub()
    lone = Indicator("domain", "lonely.example")
    hub.reads.see(lone, T1, "Contoso", "x1", "2026-12-01T00:00:00.0000000Z")
    assert hub.get("cluster", route={"kind": "domain"}, value=lone.value).status == 404
    assert hub.get("cluster", route={"kind": "virus"}, value="x").status == 404
    bad = hub.get("cluster", route={"kind": "sha256"}, value=XSS)
    assert bad.status == 400 and "not an indicator" in bad.body and "<script>" not in bad.body
    wrong = hub.get("cluster", route={"kind": "sha256"}, value="a" * 40)
    assert wrong.status == 400 and "a sha256 is 64 hexadecimal digits" in wrong.body


# the search box ----------------------------------------------------------------------------

@pytest.mark.parametrize("pasted, kind, indicator, tenants", [
    ("B" * 64, "", SHA256, 3),
    (f"  {'a' * 40}  ", "", SHA1, 3),
    ("185.1.2.3", "", IP, 2),
    ("Evil.Example.", "", DOMAIN, 2),
    (f"{ONERROR.upper()}.EXE", "file_name", TOOL, 2),
    (f"HTTP://EVIL.EXAMPLE:80/{XSS}?q={ONERROR}", "", URL, 3),
])
def test_search_each_kind_finds_every_tenant_and_alert(pasted, kind, indicator, tenants):
    hub = Hub()
    page = hub.get("lookup", q=pasted, kind=kind)
    assert page.status == 200
    assert_safe(page.body)
    found = rows(page.body, "sightings")
    assert len({re.search(r'data-tenant="([^"]+)"', r).group(1) for r in found}) == tenants
    assert unescape(re.search(r'id="l-value">([^<]*)<', page.body).group(1)) == indicator.value
    for link in re.findall(r'class="alert-link" href="([^"]+)"', page.body):
        assert re.fullmatch(r"/api/portal/tenants/[0-9a-f-]{36}/alerts/[\w-]+", link)
    assert 'id="l-cluster"' in page.body  # it is a cluster: a link to its page


def test_search_a_hostile_url_shows_it_as_text():
    hub = Hub()
    found = Indicator("url", "http://evil.example/x")
    hub.reads.see(found, T2, "Fabrikam", "u1", "2026-12-01T00:00:00.0000000Z",
                  title=f"{XSS}{ONERROR}")
    page = hub.get("lookup", q="HTTP://EVIL.EXAMPLE./x#top")
    assert page.status == 200
    assert_safe(page.body)
    assert f"{XSS}{ONERROR}" in unescape(page.body)  # the title, as text


@pytest.mark.parametrize("pasted, kind", [
    ("hello world", ""), ("abc123", ""), (f"javascript:{XSS}", ""), (XSS, ""),
    ("a" * 40, "sha256"), ("C:\\tools\\mimikatz.exe", "file_name"), ("x…", ""),
])
def test_a_value_that_is_no_indicator_gets_a_400_saying_why(pasted, kind):
    with pytest.raises(ValueError) as why:
        indicator_of(pasted, kind)
    reason = str(why.value)
    page = Hub().get("lookup", q=pasted, kind=kind)
    assert page.status == 400
    assert_safe(page.body)
    error = unescape(re.search(r'id="lookup-error"[^>]*>(.*?)</p>', page.body, re.S).group(1))
    assert error.startswith("This is not an indicator") and reason in error
    assert unescape(re.search(r'id="lookup-q" value="([^"]*)"', page.body).group(1)) == pasted


def test_search_is_keyset_paged_and_starts_empty(monkeypatch):
    monkeypatch.setattr(cluster_pages, "LOOKUP_PAGE", 2)
    hub = Hub()
    empty = hub.get("lookup")
    assert empty.status == 200 and 'id="sightings"' not in empty.body
    page = hub.get("lookup", q=SHA256.value)
    first = rows(page.body, "sightings")
    following = re.search(r'<a href="([^"]+)" id="next">', page.body).group(1)
    rest = rows(hub.follow(following, "lookup").body, "sightings")
    assert len(first) == 2 and len(rest) == 1 and rest[0] not in first
    assert hub.get("lookup", q=SHA256.value, cursor="99").status == 400


def test_the_nav_has_the_page_and_the_search_box():
    body = Hub().get("clusters").body
    assert '<a href="/api/portal/clusters" id="nav-clusters">' in body
    form = re.search(r'<form[^>]*id="nav-search".*?</form>', body, re.S).group(0)
    assert 'action="/api/portal/lookup"' in form and 'name="q"' in form


# the alert page ------------------------------------------------------------------------------

def test_the_alert_page_says_which_indicators_other_customers_have():
    hub = Hub()
    hub.reads.see(Indicator("ip", "198.51.100.9"), T1, "Contoso", ALERT_ID,
                  "2026-12-01T00:00:00.0000000Z")
    page = hub.get("alert", route={"tenant_id": T1, "alert_id": ALERT_ID})
    assert page.status == 200
    assert_safe(page.body)
    table = re.search(r'<table id="alert-indicators">.*?</table>', page.body, re.S).group(0)
    also = re.findall(r'class="also-seen" href="([^"]+)">also seen at (\d+) other '
                      r'customers?<', table)
    assert [n for _, n in also] == ["1", "1", "1", "1"]  # IP, DOMAIN, TOOL, JS: at T2
    assert "javascript:alert(3)" in table  # as text, the link is the lookup's
    assert all(link.startswith("/api/portal/lookup?") for link, _ in also)
    assert 'class="only-here"' in table  # the private one: at no other customer
    # the link finds it at the other customer
    found = hub.follow(also[0][0], "lookup")
    assert found.status == 200 and T2 in found.body


# suppressions ------------------------------------------------------------------------------

def test_suppress_and_remove_as_the_signed_in_user():
    hub = Hub()
    page = hub.get("suppressions", who="actor")
    assert 'id="suppress-form"' in page.body
    added = hub.post("add", {"value": URL.value, "kind": "url",
                             "reason": f"our own scanner {XSS}"}, who="actor")
    assert added.status == 303 and added.headers["Location"].endswith("?done=add")
    (kept,) = hub.reads.suppressions()
    assert (kept.indicator, kept.author) == (URL, "actor@mssp.example")
    listed = hub.get("suppressions", who="actor", done="add")
    assert_safe(listed.body)
    assert "our own scanner" in listed.body and "actor@mssp.example" in listed.body
    assert URL.key not in hub.get("clusters").body  # it forms no cluster now
    # the remove form carries the indicator as rendered
    form = re.search(r'<form[^>]*class="inline remove-form">.*?</form>', listed.body,
                     re.S).group(0)
    fields = {n: unescape(v) for n, v in re.findall(r'name="(\w+)" value="([^"]*)"', form)}
    assert (fields["kind"], fields["value"]) == ("url", URL.value)
    removed = hub.post("remove", {"kind": fields["kind"], "value": fields["value"]},
                       who="actor")
    assert removed.status == 303 and removed.headers["Location"].endswith("?done=remove")
    assert hub.reads.removed == [(URL, "actor@mssp.example")] and not hub.reads.suppressions()
    again = hub.post("remove", {"kind": "url", "value": URL.value}, who="actor")
    assert again.headers["Location"].endswith("?done=gone")


def test_suppressing_needs_a_reason_an_indicator_csrf_and_the_action_role():
    hub = Hub()
    no_reason = hub.post("add", {"value": IP.value, "reason": "   "}, who="actor")
    assert no_reason.status == 400 and "say why it is benign" in no_reason.body
    control = hub.post("add", {"value": IP.value, "reason": "a\x00b"}, who="actor")
    assert control.status == 400
    no_indicator = hub.post("add", {"value": XSS, "reason": "x"}, who="actor")
    assert no_indicator.status == 400 and "not an indicator" in no_indicator.body
    assert_safe(no_indicator.body)
    forged = hub.post("add", {"value": IP.value, "reason": "x"}, who="actor", csrf=False)
    assert forged.status == 403
    reader = hub.post("add", {"value": IP.value, "reason": "x"}, who="reader")
    assert reader.status == 403
    assert not hub.reads.suppressions()
    hub.reads.suppress(IP, "noise", "someone")
    assert hub.post("remove", {"kind": "ip", "value": IP.value}, who="reader").status == 403
    assert hub.reads.suppressions()
    page = hub.get("suppressions", who="reader")
    assert 'id="suppress-blocked"' in page.body and "remove-form" not in page.body


def test_the_cluster_page_offers_to_suppress_with_the_form_filled():
    hub = Hub()
    page = hub.get("cluster", route={"kind": "ip"}, value=IP.value)
    link = re.search(r'<a href="([^"]+)" id="suppress-link"', page.body).group(1)
    form = hub.follow(link, "suppressions").body
    assert 'id="s-value" value="185.1.2.3"' in form
    assert '<option value="ip" selected>' in form
