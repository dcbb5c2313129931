"""The portal's forms over plain HTTP on the real host: a change needs the signed-in
principal's own CSRF token and a request from the portal itself."""

from __future__ import annotations

import re
from html import unescape

import pytest
import requests

from shared.model import Tenant, TenantStatus
from tests.e2e.conftest import PORTAL_KEY
from tests.e2e.test_portal_browser import principal


@pytest.fixture
def tenant(app_host, sim, simulator):
    _, repo = app_host
    created = sim.add_tenant("Adatum <Forms>", consent=[simulator.config.client_id])
    return repo.add(Tenant(created["id"], "Adatum <Forms>"))


def _session(header: str) -> requests.Session:
    session = requests.Session()
    session.headers["X-MS-CLIENT-PRINCIPAL"] = header
    return session


def _token(session: requests.Session, url: str) -> str:
    page = session.get(url, timeout=10)
    assert page.status_code == 200, page.text
    return unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))


def test_pages_forbid_framing_scripts_and_sniffing(app_host, tenant):
    host, _ = app_host
    page = _session(principal()).get(f"{host.http.base_url}/api/portal/tenants/"
                                     f"{tenant.tenant_id}", timeout=10)
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy and "<script" not in page.text.lower()
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "Adatum &lt;Forms&gt;" in page.text and "Adatum <Forms>" not in page.text


def test_a_change_needs_this_principals_token_from_this_portal(app_host, tenant):
    host, repo = app_host
    base = f"{host.http.base_url}/api/portal"
    page_url = f"{base}/tenants/{tenant.tenant_id}"
    pause = f"{page_url}/pause"
    ana = _session(principal(name="ana@mssp.example"))
    bob = _session(principal(name="bob@mssp.example"))
    own = {"Origin": host.http.base_url, "Sec-Fetch-Site": "same-origin"}
    anas_token = _token(ana, page_url)
    attempts = [
        (ana, {}, own),  # no token
        (ana, {"csrf": "1.2.3"}, own),  # a made-up one
        (bob, {"csrf": anas_token}, own),  # someone else's
        (ana, {"csrf": anas_token}, {"Origin": "https://evil.example"}),
        (ana, {"csrf": anas_token}, {"Sec-Fetch-Site": "cross-site"}),
    ]
    for session, form, headers in attempts:
        r = session.post(pause, data=form, headers=headers, allow_redirects=False, timeout=10)
        assert r.status_code == 403, (form, headers)
        assert repo.get(tenant.tenant_id).status == TenantStatus.ACTIVE
    anonymous = requests.post(pause, data={"csrf": anas_token}, headers=own,
                              allow_redirects=False, timeout=10)
    assert anonymous.status_code == 401

    done = ana.post(pause, data={"csrf": anas_token}, headers=own, allow_redirects=False,
                    timeout=10)
    assert done.status_code == 303
    assert done.headers["Location"] == f"/api/portal/tenants/{tenant.tenant_id}?done=pause"
    assert repo.get(tenant.tenant_id).status == TenantStatus.PAUSED

    again = ana.post(pause, data={"csrf": anas_token}, headers=own, allow_redirects=False,
                     timeout=10)
    assert again.status_code == 409 and "only an active tenant" in again.text

    gone = ana.post(f"{page_url}/offboard", data={"csrf": anas_token}, headers=own,
                    allow_redirects=False, timeout=10)
    assert gone.status_code == 303
    assert repo.get(tenant.tenant_id).status == TenantStatus.OFFBOARDED


def test_key_sign_in_refuses_a_wrong_key_and_another_site(app_host):
    host, _ = app_host
    login = f"{host.http.base_url}/api/portal/login"
    assert requests.get(login, params={"key": "wrong-key-wrong-key"}, timeout=10,
                        allow_redirects=False).status_code == 401
    cross = requests.post(login, data={"key": PORTAL_KEY}, allow_redirects=False, timeout=10,
                          headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and "Set-Cookie" not in cross.headers
    ok = requests.post(login, data={"key": PORTAL_KEY}, allow_redirects=False, timeout=10,
                       headers={"Origin": host.http.base_url})
    assert ok.status_code == 303 and "HttpOnly" in ok.headers["Set-Cookie"]


def test_the_overview_shows_health_with_reasons_and_ops_notices(app_host, storage_env):
    from shared.tenants.ops_notices import OpsNotices

    host, repo = app_host
    failing = repo.add(Tenant("7d4f1f3e-2b8a-4c1e-9f57-0a1b2c3d4e5f", "Failing <Co>"))
    repo.merge(failing.tenant_id, consecutive_failures=4, last_error="Defender 503")
    subject = "Tenant onboarded: <script>x</script>"
    OpsNotices.on(storage_env, "ops@mssp.example").add("tenant_onboarded", failing.tenant_id,
                                                    subject, "body")
    try:
        page = _session(principal()).get(f"{host.http.base_url}/api/portal", timeout=20)
        assert page.status_code == 200
        assert 'data-status="degraded"' in page.text
        assert 'data-reason="tenants_failing"' in page.text
        notices = page.text[page.text.index('id="ops-notices"'):]
        assert "Tenant onboarded: &lt;script&gt;x&lt;/script&gt;" in notices
        assert "<script>" not in page.text
        assert "recorded only" in notices  # MAIL_TRANSPORT=none here
    finally:
        repo.set_status(failing.tenant_id, TenantStatus.OFFBOARDED, "test done")


def test_a_reconsent_invitation_from_the_tenant_page(app_host, tenant):
    host, repo = app_host
    page_url = f"{host.http.base_url}/api/portal/tenants/{tenant.tenant_id}"
    ana = _session(principal(name="ana@mssp.example"))
    own = {"Origin": host.http.base_url, "Sec-Fetch-Site": "same-origin"}
    token = _token(ana, page_url)
    assert 'id="reconsent"' not in ana.get(page_url, timeout=10).text  # active: no button
    refused = ana.post(f"{page_url}/reconsent", data={"csrf": token}, headers=own,
                       allow_redirects=False, timeout=10)
    assert refused.status_code == 409 and "needs no new consent" in refused.text
    repo.set_status(tenant.tenant_id, TenantStatus.OFFBOARDED, "by the test")
    assert 'id="reconsent"' in ana.get(page_url, timeout=10).text
    bad = ana.post(f"{page_url}/reconsent", data={"csrf": token, "contact_email": "nope"},
                   headers=own, allow_redirects=False, timeout=10)
    assert bad.status_code == 400 and "contact_email" in bad.text
    forged = ana.post(f"{page_url}/reconsent", data={}, headers=own, allow_redirects=False,
                      timeout=10)
    assert forged.status_code == 403
    done = ana.post(f"{page_url}/reconsent", data={"csrf": token,
                                                   "contact_email": "it@adatum.example"},
                    headers=own, allow_redirects=False, timeout=10)
    assert done.status_code == 303
    shown = ana.get(f"{host.http.base_url}{done.headers['Location']}", timeout=10).text
    assert "re-consent invitation is ready" in shown and "(re-consent)" in shown
    link = re.search(r'class="invitation-link" href="([^"]+)"', shown).group(1)
    assert "/api/onboard/" in link and "it@adatum.example" in shown
    assert repo.get(tenant.tenant_id).status == TenantStatus.OFFBOARDED  # until consent
