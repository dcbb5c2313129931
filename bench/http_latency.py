"""The local host's answer time for a page that touches no storage (issue 19, item 9).

Baseline, measured in the same run: the standard library's HTTP handler writing headers
then body in two small writes with Nagle's algorithm on, which is what the local host did
(a keep-alive client's delayed ACK held every body back ~40 ms). Then the local host itself
on an anonymous function returning a short text. One keep-alive connection each, as a
browser or the tests fetch.

    .venv/bin/python -m bench.http_latency --requests 200
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import azure.functions as func

from bench.harness import ROOT
from devhost.host import Host

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="hello", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("hello", mimetype="text/plain")


class _TwoWrites(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def measure(port: int, path: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    conn.getresponse().read()  # connected: only answers are timed
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("GET", path)
        conn.getresponse().read()
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return times


def _row(name: str, times: list[float], base: float) -> str:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    return f"| {name} | {median:.2f} | {p95:.2f} | {median / base:.3f}x |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    baseline = ThreadingHTTPServer(("127.0.0.1", 0), _TwoWrites)
    threading.Thread(target=baseline.serve_forever, daemon=True).start()
    slow = measure(baseline.server_address[1], "/", args.requests)
    baseline.shutdown()
    os.environ.setdefault("DEVHOST_FUNCTION_KEY", "bench-function-key")
    os.environ.setdefault("DEVHOST_MASTER_KEY", "bench-master-key")
    host = Host(ROOT, "bench.http_latency:app", http_port=0)
    host.start()
    try:
        assert host.http
        fast = measure(host.http.port, "/api/hello", args.requests)
    finally:
        host.stop()
    base = statistics.median(slow)
    print("| server | median ms | p95 ms | median vs baseline |")
    print("| --- | --- | --- | --- |")
    print(_row("baseline: two writes, Nagle on", slow, base))
    print(_row("local host: one write, TCP_NODELAY", fast, base))


if __name__ == "__main__":
    main()
