"""A customer's administrator clicks through onboarding in headless Chromium, as in a
real browser: no certificate exception (never ignore_https_errors). The pages the browser
opens on the simulator are plain HTTP on loopback (MSSP_SIGN_IN_HOST, as `make run` sets
it), while the app's code exchange, JWKS and Defender check stay on HTTPS.

Screenshots go to test-artifacts/consent/."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

from shared.model import TenantStatus
from shared.tenants.onboarding import Onboarding
from tests.conftest import ROOT
from tests.e2e.conftest import FUNCTION_KEY

ARTIFACTS = ROOT / "test-artifacts" / "consent"


@pytest.fixture
def extra_settings(simulator) -> dict[str, str]:
    return {"MSSP_SIGN_IN_HOST": simulator.browser_base_url}


@pytest.fixture(autouse=True)
def quick_verification(monkeypatch):
    monkeypatch.setattr(Onboarding, "VERIFY_PAUSE", 0.05)


@pytest.fixture
def customer_browser(browser):
    """A plain browser context: certificate errors are errors; nothing leaves loopback."""
    context = browser.new_context()
    context.route("**/*", lambda route: route.continue_() if urlsplit(
        route.request.url).hostname in ("127.0.0.1", "localhost") else route.abort())
    yield context.new_page()
    context.close()


def _invite(app_host, **fields) -> str:
    host, _ = app_host
    r = requests.post(f"{host.http.base_url}/api/invitations", timeout=10,
                      headers={"x-functions-key": FUNCTION_KEY},
                      json={"display_name": "Tailspin Toys",
                            "contact_email": "it@tailspin.example", **fields})
    assert r.status_code == 201, r.text
    return r.json()["link"]


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _open_consent_page(page, link: str, simulator) -> None:
    page.goto(link)
    assert "Connect Microsoft Defender" in page.title()
    page.click("button[type=submit]")
    page.wait_for_selector("#accept")
    assert page.url.startswith(f"{simulator.browser_base_url}/")  # plain HTTP, no warning
    assert "Permissions requested" in page.content()


def test_an_invitation_for_any_tenant_makes_the_admin_choose(app_host, simulator, sim,
                                                             customer_browser):
    _, repo = app_host
    customer = sim.add_tenant("Tailspin Toys")["id"]
    sim.add_tenant("Another Customer")  # the page must not quietly pick someone
    page = customer_browser
    _open_consent_page(page, _invite(app_host), simulator)
    assert page.input_value("#signed_in_tenant") == ""  # nothing chosen for the admin
    _shot(page, "any-1-choose")
    page.click("#accept")  # without a choice: the browser keeps the form (required)
    page.wait_for_timeout(300)
    assert page.url.startswith(simulator.browser_base_url) and page.locator("#accept").count()
    page.select_option("#signed_in_tenant", customer)
    page.click("#accept")
    page.wait_for_url(re.compile(r"/api/consent/callback"))
    assert "You are connected" in page.content()
    _shot(page, "any-2-connected")
    assert repo.get(customer).status == TenantStatus.ACTIVE


def test_an_invitation_naming_a_tenant_preselects_it(app_host, simulator, sim,
                                                     customer_browser):
    _, repo = app_host
    named = sim.add_tenant("Named Customer", domain="named-customer.example")["id"]
    page = customer_browser
    _open_consent_page(page, _invite(app_host, expected_tenant=named), simulator)
    assert page.locator("#signed_in_tenant").count() == 0  # no choice: the invited one
    assert page.locator("input[name=signed_in_tenant]").get_attribute("value") == named
    assert "admin@named-customer.example" in page.content()
    _shot(page, "named-1-preselected")
    page.click("#accept")
    page.wait_for_url(re.compile(r"/api/consent/callback"))
    assert "You are connected" in page.content()
    assert repo.get(named).status == TenantStatus.ACTIVE
