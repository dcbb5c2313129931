"""HTTP trigger semantics of the local host, over real HTTP."""

from __future__ import annotations

import logging
import re
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


def _median_ms(url: str, n: int = 15) -> float:
    """Median time of `n` answers on one keep-alive connection, as a browser fetches."""
    session = requests.Session()
    session.get(url, timeout=10)  # connect first: only the answers are timed
    times = []
    for _ in range(n):
        started = time.perf_counter()
        session.get(url, timeout=10)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class _NagleHandler(BaseHTTPRequestHandler):
    """The delay fixed, as a baseline measured in the same run: headers, then body in a
    second small write, Nagle's algorithm on (the standard library's defaults)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"hello a"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_answers_leave_without_the_nagle_delay(base):
    """An answer that touches no storage came back after ~40 ms (a keep-alive client's
    delayed ACK held the body back): now well under half the baseline's time."""
    baseline = ThreadingHTTPServer(("127.0.0.1", 0), _NagleHandler)
    threading.Thread(target=baseline.serve_forever, daemon=True).start()
    try:
        slow = _median_ms(f"http://127.0.0.1:{baseline.server_address[1]}/")
    finally:
        baseline.shutdown()
        baseline.server_close()
    fast = _median_ms(f"{base}/anon/a")
    assert slow >= 30, f"the baseline shows no Nagle delay here ({slow:.1f} ms)"
    assert fast < slow / 2, f"{fast:.1f} ms against a baseline of {slow:.1f} ms"


def test_refused_key_and_failed_function_answer_a_small_json_error(base):
    refused = requests.get(f"{base}/items/1", timeout=10)
    assert refused.status_code == 401
    assert refused.headers["Content-Type"].startswith("application/json")
    assert refused.json()["status"] == 401 and "key" in refused.json()["error"]
    failed = requests.get(f"{base}/boom", timeout=10)
    assert failed.status_code == 500
    assert failed.headers["Content-Type"].startswith("application/json")
    assert failed.json()["status"] == 500 and "secret" not in failed.text
