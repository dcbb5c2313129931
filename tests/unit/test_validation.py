"""The one address check and the one request-validation layer."""

from __future__ import annotations

import pytest

from shared import validation
from shared.addresses import parse_address
from shared.config import SettingsError, get_settings
from shared.notify.rules import parse_rule
from shared.siem.pull import parse_query
from shared.tenants.admin import TenantPatch
from shared.tenants.invitations import parse_invitation
from shared.validation import MAX_BODY, MAX_DEPTH, NoBody, ValidationError
from shared.web.openapi import document


@pytest.mark.parametrize("text", [
    "x@example.com\n", "x@example.com\r\nBcc: y@example.com", "Ops <ops@mssp.example>",
    "a@b.example, c@d.example", "a@b.example;c@d.example", '"a b"@mssp.example',
    "a\x00@mssp.example", "a\x7f@mssp.example", "a@b", "a@b.test", "", "@mssp.example",
    "a@[127.0.0.1]", "a" * 250 + "@b.example", "a\ud800@mssp.example"])
def test_an_address_is_one_bare_address(text):
    with pytest.raises(ValueError):
        parse_address(text)


def test_an_address_is_normalized():
    assert parse_address("Soc@MSSP.Example") == "Soc@mssp.example"
    assert parse_address("it@northwind.example") == "it@northwind.example"


def test_every_place_that_takes_an_address_uses_the_one_check(monkeypatch):
    with pytest.raises(ValidationError) as refused:
        parse_invitation({"display_name": "A", "contact_email": "x@example.com\n"})
    assert refused.value.errors[0]["field"] == "contact_email"
    with pytest.raises(ValidationError) as refused:
        parse_rule({"name": "r", "recipients": ["a@b.example", "x@example.com\n"]}, "*")
    assert refused.value.errors[0]["field"] == "recipients.1"
    from shared.config import MailSettings, OnboardingSettings

    with pytest.raises(SettingsError, match="OPS_EMAIL") as refused:
        OnboardingSettings.from_env({"OPS_EMAIL": "ops@mssp.example\nBcc: x@y.example",
                                     "ONBOARDING_STATE_KEY": "k" * 32})
    assert "ops@" not in str(refused.value)  # a setting is named, never its value
    with pytest.raises(SettingsError, match="MAIL_REPLY_TO"):
        MailSettings.from_env({"MAIL_REPLY_TO": "SOC <soc@mssp.example>"})
    get_settings.cache_clear()


@pytest.mark.parametrize(("raw", "status", "says"), [
    (b"[" * 100_000 + b"]" * 100_000, 413, "larger"),
    (b"[" * 2000 + b"]" * 2000, 400, "not valid JSON"),  # orjson's own limit is 1024
    (b"[" * 1000 + b"]" * 1000, 400, "deeper"),
    (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), 400, "deeper"),
    (b'{"a": NaN}', 400, "not valid JSON"), (b'{"a": Infinity}', 400, "not valid JSON"),
    (b'"\\ud800"', 400, "not valid JSON"), (b"\xff", 400, "not valid JSON"),
    (b" " * (MAX_BODY + 1), 413, "larger"),
])
def test_bodies_are_limited_before_any_model_sees_them(raw, status, says):
    with pytest.raises(ValidationError) as refused:
        validation.decode_json(raw)
    assert refused.value.status == status
    assert refused.value.errors[0]["field"] == "body" and says in refused.value.errors[0][
        "message"]


def test_a_body_at_the_depth_limit_is_fine():
    raw = b'{"a":' * (MAX_DEPTH - 1) + b"[1]" + b"}" * (MAX_DEPTH - 1)
    assert validation.decode_json(raw) is not None
    assert validation.decode_json(b"") is None and validation.decode_json(b" \n") is None


def test_models_name_each_field_with_its_dotted_path():
    with pytest.raises(ValidationError) as refused:
        parse_rule({"name": 5, "recipients": ["a@b.example"], "severities": ["Low", "Huge"],
                    "colour": "red", "digest_minutes": 5.0}, "*")
    assert {e["field"]: e["message"] for e in refused.value.errors} == {
        "name": "Input should be a valid string",
        "severities.1": "Input should be 'Informational', 'Low', 'Medium' or 'High'",
        "colour": "unknown field", "digest_minutes": "Input should be a valid integer"}
    with pytest.raises(ValidationError) as refused:
        validation.check(NoBody, [1])
    assert refused.value.errors == [{"field": "body", "message": "must be a JSON object"}]
    assert validation.check(TenantPatch, {}).model_dump(exclude_unset=True) == {}


@pytest.mark.parametrize("name", ["A\x07", "A\u0085B", "A\ud800", " ", "x" * 121])
def test_names_are_printable_text(name):
    with pytest.raises(ValidationError) as refused:
        parse_rule({"name": name, "recipients": ["a@b.example"]}, "*")
    assert [e["field"] for e in refused.value.errors] == ["name"]


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "9999-99-99T00:00:00Z"}, "since"), ({"until": "0001-01-01T00:00:00Z"}, "until"),
    ({"since": "9999-12-31T23:59:59Z"}, "since"), ({"limit": "1e3"}, "limit"),
    ({"limit": "\uff15"}, "limit"), ({"format": "xml"}, "format"),
    ({"continuation": "x" * 3000}, "continuation"), ({"tenant": "\ud800"}, "tenant"),
    ({"colour": "red"}, "colour"),
])
def test_the_pull_query_goes_through_the_same_layer(params, field):
    with pytest.raises(ValidationError) as refused:
        parse_query(params)
    assert [e["field"] for e in refused.value.errors] == [field]


def test_the_document_describes_what_the_api_answers():
    doc = document()
    schemas = doc["components"]["schemas"]
    assert {"type": "null"} in schemas["Rule"]["properties"]["min_severity"]["anyOf"]
    assert schemas["RuleBody"]["additionalProperties"] is False
    assert "default" not in schemas["TenantPatch"]["properties"]["display_name"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters" or "functionKey" not in str(op["security"]):
                continue
            assert "401" in op["responses"], (path, method)
            if "requestBody" in op:
                assert {"400", "413"} <= set(op["responses"]), (path, method)
