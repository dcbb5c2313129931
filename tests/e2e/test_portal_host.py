"""The portal on the real local host answers only for PUBLIC_BASE_URL's host: a page whose
name was rebound to 127.0.0.1 reads no page and changes nothing; and only loopback itself
(not a name that begins like it) opens the portal key and trusts the principal header."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlsplit

import pytest
import requests

from shared.model import Tenant, TenantStatus
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, PORTAL_KEY, _clear_caches
from tests.e2e.test_portal_browser import principal

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def tenant(app_host, sim, simulator):
    _, repo = app_host
    created = sim.add_tenant("Rebinding Target", consent=[simulator.config.client_id])
    return repo.add(Tenant(created["id"], "Rebinding Target"))


def _port(app_host) -> int:
    return app_host[0].http.port


def test_a_rebound_host_reads_no_page_and_changes_nothing(app_host, tenant):
    """The attack as a browser runs it: evil.example:<port> resolves to 127.0.0.1, so its
    script is same-origin with itself and may set any header, send any form."""
    host, repo = app_host
    port = _port(app_host)
    page_url = f"{host.http.base_url}/api/portal/tenants/{tenant.tenant_id}"
    evil = {"Host": f"evil.example:{port}", "X-MS-CLIENT-PRINCIPAL": principal()}
    cookie = requests.post(f"{host.http.base_url}/api/portal/login", data={"key": PORTAL_KEY},
                           allow_redirects=False, timeout=10).headers["Set-Cookie"]
    for headers in (evil, {"Host": evil["Host"], "Cookie": cookie.split(";")[0]},
                    {"Host": evil["Host"], "X-Portal-Key": PORTAL_KEY}):
        for url in (page_url, f"{host.http.base_url}/api/portal",
                    f"{host.http.base_url}/api/portal/login?key={PORTAL_KEY}"):
            r = requests.get(url, headers=headers, allow_redirects=False, timeout=10)
            assert r.status_code == 421, (url, headers.keys())
            assert not CSRF.search(r.text) and "Set-Cookie" not in r.headers
            assert "Rebinding Target" not in r.text
            assert f'href="http://127.0.0.1:{port}/api/portal"' in r.text

    # a token taken from the real page, sent from the rebound one: still refused
    own = requests.get(page_url, headers={"X-MS-CLIENT-PRINCIPAL": principal()}, timeout=10)
    token = unescape(CSRF.search(own.text).group(1))
    forged = {**evil, "Origin": f"http://evil.example:{port}", "Sec-Fetch-Site": "same-origin"}
    r = requests.post(f"{page_url}/pause", data={"csrf": token}, headers=forged,
                      allow_redirects=False, timeout=10)
    assert r.status_code == 421
    # the right Host, but the form came from another origin than PUBLIC_BASE_URL's
    for origin in (f"http://evil.example:{port}", f"http://localhost:{port}"):
        r = requests.post(f"{page_url}/pause", data={"csrf": token}, allow_redirects=False,
                          headers={"X-MS-CLIENT-PRINCIPAL": principal(), "Origin": origin},
                          timeout=10)
        assert r.status_code == 403, origin
    assert repo.get(tenant.tenant_id).status == TenantStatus.ACTIVE

    r = requests.post(f"{page_url}/pause", data={"csrf": token}, allow_redirects=False,
                      headers={"X-MS-CLIENT-PRINCIPAL": principal(),
                               "Origin": host.http.base_url}, timeout=10)
    assert r.status_code == 303 and repo.get(tenant.tenant_id).status == TenantStatus.PAUSED


def test_localhost_for_127_0_0_1_gets_the_right_link(app_host):
    """`make run` prints 127.0.0.1 links; a person who types localhost is shown the way."""
    host, _ = app_host
    port = _port(app_host)
    r = requests.get(f"{host.http.base_url}/api/portal",
                     headers={"Host": f"localhost:{port}", "X-Portal-Key": PORTAL_KEY},
                     timeout=10)
    assert r.status_code == 421
    assert r.headers["Content-Type"].startswith("text/html")
    assert f'<a href="http://127.0.0.1:{port}/api/portal">' in r.text
    assert "localhost</code> and <code>127.0.0.1</code> are different addresses" in r.text
    right = requests.get(f"{host.http.base_url}/api/portal", timeout=10,
                         headers={"X-Portal-Key": PORTAL_KEY})
    assert right.status_code == 200 and "Overview" in right.text


@pytest.mark.parametrize("look_alike", ["http://localhost.evil.example",
                                        "http://127.0.0.1.nip.io"])
def test_a_look_alike_base_url_opens_no_key_and_trusts_no_header(app_host, monkeypatch,
                                                                  look_alike):
    """PUBLIC_BASE_URL that only begins like loopback: the portal key and a principal header
    sent by the client itself must open nothing (requests carry the look-alike's Host, so
    the Host check is not what refuses them)."""
    host, _ = app_host
    port = _port(app_host)
    base = f"{look_alike}:{port}"
    monkeypatch.setenv("PUBLIC_BASE_URL", base)
    _clear_caches()
    named = {"Host": urlsplit(base).netloc}
    url = f"{host.http.base_url}/api/portal"
    attempts = [{**named, "X-Portal-Key": PORTAL_KEY},
                {**named, "X-MS-CLIENT-PRINCIPAL": principal()}]
    for headers in attempts:
        r = requests.get(url, headers=headers, allow_redirects=False, timeout=10)
        assert r.status_code >= 400 and not CSRF.search(r.text), headers.keys()
    login = requests.get(f"{url}/login", params={"key": PORTAL_KEY}, headers=named,
                         allow_redirects=False, timeout=10)
    assert login.status_code >= 400 and "Set-Cookie" not in login.headers

    # the same name over https is a public URL: no key, and the header is not believed
    monkeypatch.setenv("PUBLIC_BASE_URL", base.replace("http://", "https://"))
    monkeypatch.delenv("PORTAL_KEY")
    _clear_caches()
    r = requests.get(url, headers=attempts[1], allow_redirects=False, timeout=10)
    assert r.status_code == 401 and "not turned on" in r.text and not CSRF.search(r.text)


@pytest.fixture
def rebinding_browser(browser):
    """Debian's headless Chromium resolving evil.example to 127.0.0.1: a rebound name.
    Launched by the session's Playwright (one sync Playwright a thread)."""
    chromium = browser.browser_type.launch(
        executable_path=CHROMIUM, headless=True,
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
    yield chromium
    chromium.close()


def test_in_a_browser_a_rebound_page_gets_421_and_localhost_the_right_link(
        app_host, tenant, rebinding_browser):
    host, repo = app_host
    port = _port(app_host)
    context = rebinding_browser.new_context(bypass_csp=True)  # the attacker's script runs
    page = context.new_page()
    assert page.goto(f"http://evil.example:{port}/api/portal/login").status == 421
    own = requests.get(f"{host.http.base_url}/api/portal/tenants/{tenant.tenant_id}",
                       headers={"X-MS-CLIENT-PRINCIPAL": principal()}, timeout=10)
    token = unescape(CSRF.search(own.text).group(1))
    seen = page.evaluate("""async ([path, header, token]) => {
        const read = await fetch(path, {headers: {"X-MS-CLIENT-PRINCIPAL": header}});
        const text = await read.text();
        const sent = await fetch(path + "/pause", {method: "POST", redirect: "manual",
            headers: {"X-MS-CLIENT-PRINCIPAL": header},
            body: new URLSearchParams({csrf: token})});
        return [read.status, text.includes('name="csrf"'), sent.status];
    }""", [f"/api/portal/tenants/{tenant.tenant_id}", principal(), token])
    assert seen == [421, False, 421]
    assert repo.get(tenant.tenant_id).status == TenantStatus.ACTIVE

    page.goto(f"http://localhost:{port}/api/portal/login")
    page.get_by_role("link", name=f"http://127.0.0.1:{port}/api/portal").click()
    assert page.url == f"http://127.0.0.1:{port}/api/portal"
    assert "Sign in to the portal" in page.content()
    context.close()
