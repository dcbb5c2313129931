"""The portal's parts without I/O: who gets in, which forms count, filters, the chart."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.config import SettingsError
from shared.notify.rules import parse_rule
from shared.portal import auth
from shared.portal.chart import axis_ticks, axis_top, daily_chart
from shared.portal.queries import AlertFilter
from shared.portal.rule_form import rule_from_form
from shared.validation import ValidationError
from shared.web import error_text, pages
from shared.web.pages import render
from tests.helpers import settings

GROUP = "6f1f8a52-0c4e-4a43-9b1e-5d2b7c9e0a11"


def _portal(**overrides: str):
    return settings(PORTAL_ALLOWED_GROUPS=f"{GROUP}, other-group",
                    PORTAL_ALLOWED_ROLES="Portal.Analyst", **overrides).portal


def _header(claims: list[dict[str, str]], **extra: str) -> str:
    return base64.b64encode(json.dumps({"claims": claims, **extra}).encode()).decode()


def test_a_member_of_an_allowed_group_or_role_gets_in():
    cfg = _portal()
    who = auth.authenticate(cfg, {auth.PRINCIPAL_HEADER: _header([
        {"typ": "groups", "val": GROUP}, {"typ": "name", "val": "Ana"},
        {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
         "val": "oid-1"}])})
    assert (who.id, who.name, who.via) == ("oid-1", "Ana", "entra")
    # the role claim type App Service names in role_typ counts as a role
    who = auth.authenticate(cfg, {auth.PRINCIPAL_HEADER: _header(
        [{"typ": "urn:role", "val": "Portal.Analyst"}], role_typ="urn:role")})
    assert who.via == "entra"


@pytest.mark.parametrize(("header", "status"), [
    (None, 401),
    ("%%%not base64", 401),
    (base64.b64encode(b"[1, 2]").decode(), 401),
    (_header([{"typ": "groups", "val": "someone-else"}]), 403),
    (_header([{"typ": "roles", "val": GROUP}]), 403),  # a group id is not a role
    (_header([{"typ": "name", "val": GROUP}]), 403),  # nor is any other claim
])
def test_anyone_else_is_refused(header, status):
    headers = {auth.PRINCIPAL_HEADER: header} if header else {}
    with pytest.raises(auth.Denied) as denied:
        auth.authenticate(_portal(), headers)
    assert denied.value.status == status


def test_with_no_groups_or_roles_configured_nobody_gets_in():
    with pytest.raises(auth.Denied) as denied:
        auth.authenticate(settings().portal, {auth.PRINCIPAL_HEADER: _header(
            [{"typ": "groups", "val": GROUP}])})
    assert denied.value.status == 403


def test_in_azure_the_header_counts_only_behind_app_service_authentication():
    header = {auth.PRINCIPAL_HEADER: _header([{"typ": "groups", "val": GROUP}])}
    azure = {"PUBLIC_BASE_URL": "https://mssp.azurewebsites.net"}
    with pytest.raises(auth.Denied) as denied:
        auth.authenticate(_portal(**azure), header)
    assert denied.value.status == 401 and "not turned on" in str(denied.value)
    assert auth.authenticate(_portal(**azure, WEBSITE_AUTH_ENABLED="True"), header)


def test_the_local_key_opens_it_by_cookie_or_header_never_by_its_own_value_in_a_cookie():
    cfg = _portal(PORTAL_KEY="local-key-0123456789")
    cookie = f"{auth.SESSION_COOKIE}={auth.session_value(cfg.key)}"
    assert auth.authenticate(cfg, {"cookie": cookie}).via == "key"
    assert auth.authenticate(cfg, {auth.KEY_HEADER: cfg.key}).via == "key"
    for headers in ({"cookie": f"{auth.SESSION_COOKIE}={cfg.key}"},
                    {"cookie": f"{auth.SESSION_COOKIE}=x"}, {auth.KEY_HEADER: "nope"},
                    {"cookie": "\x00garbage;;="}):
        with pytest.raises(auth.Denied):
            auth.authenticate(cfg, headers)


def test_the_key_is_for_loopback_only_and_long_enough():
    with pytest.raises(SettingsError) as err:
        settings(PORTAL_KEY="local-key-0123456789",
                 PUBLIC_BASE_URL="https://mssp.azurewebsites.net")
    assert err.value.setting == "PORTAL_KEY" and "local-key" not in str(err.value)
    with pytest.raises(SettingsError):
        settings(PORTAL_KEY="short")
    assert "local-key" not in repr(settings(PORTAL_KEY="local-key-0123456789"))


def test_csrf_tokens_are_bound_to_the_principal_and_expire():
    cfg = _portal()
    ana = auth.Principal("oid-ana", "Ana", "entra")
    bob = auth.Principal("oid-bob", "Bob", "entra")
    token = auth.csrf_token(cfg, ana)
    assert auth.csrf_ok(cfg, ana, token)
    assert not auth.csrf_ok(cfg, bob, token)
    assert not auth.csrf_ok(cfg, auth.Principal("oid-ana", "Ana", "key"), token)
    assert not auth.csrf_ok(cfg, ana, token + "0")
    assert not auth.csrf_ok(cfg, ana, "")
    later = datetime.now(UTC).timestamp() + auth.CSRF_SECONDS + 5
    assert not auth.csrf_ok(cfg, ana, token, now=later)
    other = settings(ONBOARDING_STATE_KEY="another-state-key-0123456789-abcdefgh").portal
    assert not auth.csrf_ok(other, ana, token)


@pytest.mark.parametrize(("headers", "ok"), [
    ({"origin": "http://127.0.0.1:7071", "sec-fetch-site": "same-origin"}, True),
    ({}, True),  # an old or non-browser client: the token alone decides
    ({"origin": "https://evil.example"}, False),
    ({"origin": "null"}, False),
    ({"sec-fetch-site": "cross-site"}, False),
    ({"sec-fetch-site": "same-site", "origin": "http://127.0.0.1:7071"}, False),
])
def test_forms_must_come_from_the_portal_itself(headers, ok):
    assert auth.same_origin(headers, {"http://127.0.0.1:7071"}) is ok


def test_alert_filters_ignore_unknown_values_and_run_in_the_table_service():
    flt = AlertFilter.parse({"tenant": "t1", "severity": "Nope", "status": "open",
                             "category": " Ransomware ", "range": "999d",
                             "before": "garbage"}, {"t1"})
    assert (flt.tenant, flt.severity, flt.range, flt.before) == ("t1", "", "7d", None)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    text, params = flt.query("t1", now)
    assert "(Status eq 'New' or Status eq 'InProgress')" in text
    assert "Category eq @category" in text and params["category"] == "Ransomware"
    assert params["since"] == now - timedelta(days=7)
    assert AlertFilter.parse({"tenant": "not-ours"}, {"t1"}).tenant == ""


def test_the_chart_stacks_severities_per_day_and_scales():
    today = date(2026, 12, 1)
    chart = daily_chart({("2026-12-01", "High"): 3, ("2026-12-01", "Low"): 4,
                         ("2026-11-30", "Medium"): 1, ("2026-10-01", "High"): 50}, today)
    assert chart.total == 8 and len(chart.days) == 14 and chart.days[-1][1] == "01 Dec"
    high, low = [b for b in chart.bars if b.label.startswith("2026-12-01")]
    assert high.y + high.height == chart.baseline  # High at the bottom
    assert low.y + low.height == high.y
    assert chart.ticks[-1][1] == 10  # 7 rounds up to a readable top
    assert {s: n for s, _, n in chart.legend} == {
        "High": 3, "Medium": 1, "Low": 4, "Informational": 0}


@pytest.mark.parametrize("before", ["0001-01-01T00:00:00+14:00~a~b",
                                    "9999-12-31T23:59:59.999999+00:00~a~b",
                                    "9999-12-31T23:59:59-14:00~a~b", "1969-07-20T20:17:00Z~a~b"])
def test_an_alerts_link_beyond_the_years_we_keep_starts_from_the_newest(before):
    flt = AlertFilter.parse({"before": before}, set())
    assert flt.before is None
    flt.query("t1", datetime(2026, 12, 1, tzinfo=UTC))  # never an OverflowError


@pytest.mark.parametrize(("largest", "top", "ticks"), [
    (0, 1, [0, 1]), (1, 1, [0, 1]), (2, 2, [0, 1, 2]), (3, 5, [0, 5]), (7, 10, [0, 5, 10]),
    (11, 20, [0, 10, 20]), (49, 50, [0, 25, 50]), (150, 200, [0, 100, 200]),
    (201, 500, [0, 250, 500]), (999, 1000, [0, 500, 1000]), (1001, 2000, [0, 1000, 2000]),
    (123_456, 200_000, [0, 100_000, 200_000]),
])
def test_the_chart_axis_is_the_next_round_number(largest, top, ticks):
    assert axis_top(largest or 1) == top
    assert axis_ticks(top) == ticks
    chart = daily_chart({("2026-12-01", "High"): largest}, date(2026, 12, 1))
    assert [value for _, value in chart.ticks] == ticks
    if largest:  # the tallest bar fills at least 40% of the plot: 150 is not lost under 1,000
        assert chart.bars[0].height >= 0.4 * (chart.baseline - chart.ticks[-1][0])


def test_an_entra_error_gets_a_plain_summary_and_keeps_the_raw_text():
    raw = ("AADSTS700016: Application with identifier 'x' was not found in the directory "
           "'Contoso'. Trace ID: 1 Correlation ID: 2 Timestamp: 2026-12-01 10:00:00Z")
    assert error_text.summary(raw).startswith("The customer's tenant no longer has")
    assert "AADSTS4242" in error_text.summary("AADSTS4242: something new")
    assert error_text.summary("HTTP 500 from Defender") == ""
    page = render("portal/macros.html")  # the macro file renders nothing by itself
    assert page.strip() == ""
    macro = pages._ENV.get_template("portal/macros.html").module.error_text
    html = str(macro(raw))
    assert "<details" in html and "<summary" in html and "Trace ID: 1" in html
    assert "<details" not in str(macro("HTTP 500 from <Defender>")) \
        and "&lt;Defender&gt;" in str(macro("HTTP 500 from <Defender>"))


def test_times_on_the_pages_show_seconds():
    assert pages._when(datetime(2026, 12, 1, 9, 5, 7, tzinfo=UTC)) \
        == "2026-12-01 09:05:07 UTC"


def test_a_rule_from_the_portal_form_is_checked_as_the_api_checks_it():
    tenant = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
    form = {"csrf": "x", "back": tenant, "name": " SOC ", "recipients": "a@x.example,\r\n"
            "b@x.example; a@x.example", "severity_High": "yes", "severity_Low": "no",
            "on_new": "yes", "enabled": "yes", "delivery": "digest"}
    rule = rule_from_form(form, tenant)
    assert (rule.name, rule.scope, rule.severities, rule.delivery) == (
        "SOC", tenant, ["High"], "digest")
    assert [r["address"] for r in rule.recipients] == ["a@x.example", "b@x.example"]
    assert (rule.on_new, rule.on_update, rule.enabled) == (True, False, True)
    with pytest.raises(ValidationError) as err:
        rule_from_form({**form, "recipients": "not-an-address", "on_new": ""}, tenant)
    assert [e["field"] for e in err.value.errors] == ["recipients.0"]
    with pytest.raises(ValidationError) as err:  # neither box: the rule would never fire
        rule_from_form({**form, "on_new": ""}, tenant)
    assert [e["field"] for e in err.value.errors] == ["on_new"]


def test_editing_a_rule_in_the_portal_keeps_what_the_form_does_not_show():
    tenant = "3f2b6a10-8c1d-4e5f-9a7b-2c3d4e5f6a7b"
    stored = parse_rule({"name": "API rule", "recipients": ["a@x.example"],
                         "min_severity": "Medium", "device_groups": ["Servers"],
                         "max_per_hour": 5, "categories": ["Malware"]}, tenant)
    edited = rule_from_form({"name": "API rule", "recipients": "a@x.example\nnew@x.example",
                             "on_new": "yes", "on_update": "yes"}, tenant, existing=stored)
    assert edited.id == stored.id and edited.enabled is False  # unchecked: off
    assert (edited.device_groups, edited.max_per_hour, edited.categories) == (
        ["Servers"], 5, ["Malware"])
    assert edited.min_severity == "Medium" and edited.on_update is True
    added = {r["address"]: r["added_at"] for r in edited.recipients}
    assert added["a@x.example"] == stored.recipients[0]["added_at"]  # its history kept
    with_set = rule_from_form({"name": "n", "recipients": "a@x.example", "on_new": "yes",
                               "severity_High": "yes"}, tenant, existing=stored)
    assert with_set.severities == ["High"] and with_set.min_severity is None
