"""Input found by fuzzing and by hand that reached a 500, or was stored, now gets a 4xx
naming the field, and nothing is written for it (issue 16)."""

from __future__ import annotations

import re
import uuid
from html import unescape

import pytest
import requests

from shared.model import Tenant
from shared.storage import tables
from tests.e2e.test_portal_browser import principal

pytestmark = pytest.mark.usefixtures("global_rules_removed")
NESTED = b'{"a":' * 5000 + b"1" + b"}" * 5000
INVITATION = {"display_name": "Deep Co", "contact_email": "it@deep.example"}
RULE = {"name": "Deep rule", "recipients": ["soc@mssp.example"]}


def _fields(response) -> set[str]:
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    return {e["field"] for e in response.json()["errors"]}


def _rows(storage_env, table: str) -> int:
    return sum(1 for _ in tables.table(storage_env, table).list_entities())


def _tenant(repo) -> str:
    tenant_id = str(uuid.uuid4())
    repo.add(Tenant(tenant_id, "Valid Co"))
    return tenant_id


def test_an_address_with_a_final_newline_is_refused(api, storage_env):
    base, session, _ = api
    before = _rows(storage_env, "Invitations"), _rows(storage_env, "NotifyRules")
    r = session.post(f"{base}/invitations", json={**INVITATION,
                                                  "contact_email": "x@example.com\n"})
    assert r.status_code == 400 and _fields(r) == {"contact_email"}
    r = session.post(f"{base}/rules", json={**RULE, "recipients": ["x@example.com\n"]})
    assert r.status_code == 400 and _fields(r) == {"recipients.0"}
    for display in ("Ops <ops@mssp.example>", "ops@mssp.example, x@y.example"):
        r = session.post(f"{base}/rules", json={**RULE, "recipients": [display]})
        assert r.status_code == 400 and _fields(r) == {"recipients.0"}
    assert (_rows(storage_env, "Invitations"), _rows(storage_env, "NotifyRules")) == before


@pytest.mark.parametrize("method", ["POST /invitations", "POST /rules", "PATCH /tenant",
                                    "POST /tenant/offboard", "POST /tenant/rules",
                                    "PUT /rules/id"])
def test_deeply_nested_json_is_a_400_naming_the_body(api, method):
    base, session, repo = api
    tenant_id = _tenant(repo)
    rule = session.post(f"{base}/rules", json=RULE).json()
    verb, path = method.split(" ")
    path = path.replace("/tenant", f"/tenants/{tenant_id}").replace("/id", f"/{rule['id']}")
    r = session.request(verb, f"{base}{path}", data=NESTED,
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and _fields(r) == {"body"}
    assert repo.get(tenant_id).status == "active"


def test_a_rule_name_must_be_a_string(api, storage_env):
    base, session, _ = api
    before = _rows(storage_env, "NotifyRules")
    for name in (5, ["x"], {"a": 1}, None, True):
        r = session.post(f"{base}/rules", json={**RULE, "name": name})
        assert r.status_code == 400 and _fields(r) == {"name"}, name
    assert _rows(storage_env, "NotifyRules") == before


def test_a_lone_surrogate_is_refused_and_never_stored(api, storage_env):
    base, session, repo = api
    tenant_id = _tenant(repo)
    before = _rows(storage_env, "Invitations"), _rows(storage_env, "NotifyRules")
    json_header = {"Content-Type": "application/json"}
    surrogate = '"Evil \\ud800 Co"'  # as JSON escapes it: the decoded text cannot be UTF-8
    r = session.post(f"{base}/invitations", headers=json_header, data=(
        f'{{"display_name": {surrogate}, "contact_email": "it@evil.example"}}'))
    assert r.status_code == 400 and _fields(r) == {"body"}
    r = session.patch(f"{base}/tenants/{tenant_id}", headers=json_header,
                      data=f'{{"display_name": {surrogate}}}')
    assert r.status_code == 400 and _fields(r) == {"body"}
    r = session.post(f"{base}/rules", headers=json_header,
                     data=f'{{"name": {surrogate}, "recipients": ["a@b.example"]}}')
    assert r.status_code == 400 and _fields(r) == {"body"}
    assert repo.get(tenant_id).display_name == "Valid Co"
    assert (_rows(storage_env, "Invitations"), _rows(storage_env, "NotifyRules")) == before
    for row in tables.table(storage_env, "NotifyRules").list_entities():
        row["Body"].encode()  # every stored rule is valid UTF-8


@pytest.mark.parametrize("value", ["9999-99-99T00:00:00Z", "0001-01-01T00:00:00Z",
                                   "9999-12-31T23:59:59Z", "2024-02-30T00:00:00Z",
                                   "2024-01-01T25:00:00Z"])
def test_out_of_range_times_on_the_pull_api_are_a_400(api, value):
    base, session, _ = api
    for name in ("since", "until"):
        r = session.get(f"{base}/siem/alerts", params={name: value})
        assert r.status_code == 400 and _fields(r) == {name}


def test_pull_api_limits_and_types(api):
    base, session, _ = api
    assert _fields(session.get(f"{base}/siem/alerts", params={"limit": "1e3"})) == {"limit"}
    assert _fields(session.get(f"{base}/siem/alerts",
                               params={"continuation": "x" * 5000})) == {"continuation"}
    assert _fields(session.get(f"{base}/siem/alerts", params={"tenant": "\x00"})) == {"tenant"}


@pytest.mark.parametrize(("body", "status", "field"), [
    (b" " * (10 * 1024 * 1024), 413, "body"),
    (b'{"delete_alerts": NaN}', 400, "body"),
    (b'{"delete_alerts": true, "everything": true}', 400, "everything"),
    (b'[true]', 400, "body"),
    (b'\xff\xfe', 400, "body"),
])
def test_offboard_refuses_any_body_but_its_own(api, body, status, field):
    base, session, repo = api
    tenant_id = _tenant(repo)
    r = session.post(f"{base}/tenants/{tenant_id}/offboard", data=body,
                     headers={"Content-Type": "application/json"})
    assert r.status_code == status and _fields(r) == {field}
    assert repo.get(tenant_id).status == "active"


def test_actions_without_a_body_refuse_one(api):
    base, session, repo = api
    tenant_id = _tenant(repo)
    r = session.post(f"{base}/tenants/{tenant_id}/pause", json={"reason": "x"})
    assert r.status_code == 400 and _fields(r) == {"reason"}
    assert repo.get(tenant_id).status == "active"
    assert session.post(f"{base}/tenants/{tenant_id}/pause", json={}).status_code == 200


def test_an_empty_patch_is_allowed_and_changes_nothing(api):
    base, session, repo = api
    tenant_id = _tenant(repo)
    r = session.patch(f"{base}/tenants/{tenant_id}", json={})
    assert r.status_code == 200 and r.json()["display_name"] == "Valid Co"


def test_trace_and_unknown_methods_are_405(api):
    base, session, _ = api
    for method in ("TRACE", "CONNECT", "PROPFIND"):
        r = session.request(method, f"{base}/tenants")
        assert r.status_code == 405, method
        assert r.headers["Allow"] == "GET"



def test_portal_filters_beyond_the_years_we_keep_are_ignored(api):
    base, _, _ = api
    session = requests.Session()
    session.headers["X-MS-CLIENT-PRINCIPAL"] = principal()
    r = session.get(f"{base}/portal/alerts", params={
        "before": "0001-01-01T00:00:00+14:00~a~b", "category": "\x00\x1f",
        "device_group": "x" * 5000, "range": "\ud7ff"})
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]


def test_a_bad_invitation_form_gets_the_form_back_and_stores_nothing(api, storage_env):
    base, _, _ = api
    session = requests.Session()
    session.headers["X-MS-CLIENT-PRINCIPAL"] = principal()
    page = session.get(f"{base}/portal/invitations").text
    csrf = unescape(re.search(r'name="csrf" value="([^"]+)"', page).group(1))
    before = _rows(storage_env, "Invitations")
    for form in ({"display_name": "Bell\x07 Co", "contact_email": "it@bell.example"},
                 {"display_name": "Bell Co", "contact_email": "x@example.com\n"},
                 {"display_name": "Bell Co", "contact_email": "Bell <it@bell.example>"},
                 {"display_name": "Bell Co", "contact_email": "it@bell.example",
                  "expected_tenant": "not a domain"}):
        r = session.post(f"{base}/portal/invitations", data={**form, "csrf": csrf},
                         headers={"Origin": base.rsplit("/api", 1)[0]}, allow_redirects=False)
        assert r.status_code == 400 and "text/html" in r.headers["Content-Type"], form
        assert 'role="alert"' in r.text
    assert _rows(storage_env, "Invitations") == before
