"""HTTP trigger semantics of the local host, over real HTTP."""

from __future__ import annotations

import logging
import re

import pytest
import requests

from tests.integration.devhost_fixtures import FUNCTION_KEY, MASTER_KEY


@pytest.fixture
def base(hosts) -> str:
    host, _ = hosts.start()
    return f"{host.http.base_url}/api"


def test_anonymous_route_with_parameter(base):
    r = requests.get(f"{base}/anon/J%C3%BCrgen%20X", timeout=10)
    assert r.status_code == 200
    assert r.text == "hello Jürgen X"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(("headers", "params", "status"), [
    ({}, {}, 401),
    ({"x-functions-key": "wrong"}, {}, 401),
    ({}, {"code": "wrong"}, 401),
    ({"x-functions-key": FUNCTION_KEY}, {}, 200),
    ({}, {"code": FUNCTION_KEY}, 200),
    ({"x-functions-key": MASTER_KEY}, {}, 200),
])
def test_function_auth_level(base, headers, params, status):
    r = requests.get(f"{base}/items/42", headers=headers, params=params, timeout=10)
    assert r.status_code == status
    if status == 200:
        assert r.json() == {"id": 42, "method": "GET"}


def test_admin_auth_level_needs_the_master_key(base):
    url = f"{base}/admin/thing"
    assert requests.post(url, timeout=10).status_code == 401
    assert requests.post(url, headers={"x-functions-key": FUNCTION_KEY},
                         timeout=10).status_code == 401
    r = requests.post(url, params={"code": MASTER_KEY}, timeout=10)
    assert (r.status_code, r.text) == (200, "admin ok")


def test_methods_and_route_constraints(base):
    key = {"x-functions-key": FUNCTION_KEY}
    assert requests.put(f"{base}/items/7", headers=key, timeout=10).json()["method"] == "PUT"
    r = requests.delete(f"{base}/items/7", headers=key, timeout=10)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, PUT"
    assert requests.get(f"{base}/items/seven", headers=key, timeout=10).status_code == 404
    assert requests.get(f"{base}/nothing-here", timeout=10).status_code == 404
    root = base.rsplit("/api", 1)[0]
    assert requests.get(f"{root}/anon/x", timeout=10).status_code == 404


def test_request_reaches_the_function_and_response_comes_back(base):
    r = requests.post(f"{base}/echo?a=1&a=2&b=x%20y", json={"k": "v"},
                      headers={"X-Custom": "c1"}, timeout=10)
    assert r.status_code == 201
    assert r.headers["X-Reply"] == "yes"
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["json"] == {"k": "v"}
    assert body["params"] == {"a": "1,2", "b": "x y"}
    assert body["header"] == "c1"
    assert body["url"].endswith("/api/echo?a=1&a=2&b=x%20y")
    assert re.fullmatch(r"[0-9a-f-]{36}", body["invocation_id"])


def test_redirect_is_passed_through(base):
    r = requests.get(f"{base}/go", allow_redirects=False, timeout=10)
    assert r.status_code == 302
    assert r.headers["Location"] == "https://example.test/x"


def test_exception_becomes_500_without_details_and_one_log_line_each(base, caplog):
    caplog.set_level(logging.INFO, logger="devhost")
    r = requests.get(f"{base}/boom", timeout=10)
    assert r.status_code == 500
    assert "secret" not in r.text
    requests.get(f"{base}/anon/a", timeout=10)
    done = [rec.getMessage() for rec in caplog.records
            if rec.getMessage().startswith(("Executed 'Functions.boom'",
                                            "Executed 'Functions.anon'"))]
    assert len(done) == 2
    assert re.match(r"Executed 'Functions\.boom' \(Failed, Id=[0-9a-f-]{36}, Duration=\d+ms\)",
                    done[0])
    assert re.match(r"Executed 'Functions\.anon' \(Succeeded, Id=[0-9a-f-]{36}, "
                    r"Duration=\d+ms\)", done[1])
