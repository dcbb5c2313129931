"""A small stand-in for Microsoft Graph's `GET /v1.0/security/alerts_v2` over plain HTTP on
loopback, at the edge of the integration tests until the simulator serves it (the merger
runs them against the simulator then). Documented behaviour only: `$filter` on
lastUpdateDateTime (`ge`), `$top`, no order (a fixed scramble), `@odata.nextLink` (opaque,
here `$skiptoken`; before or after the list, alternately), 429 with Retry-After, errors
as Graph's `{"error": {"code", "message"}}`. The tenant is the token's `tid`."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATH = "/v1.0/security/alerts_v2"


def _tid(authorization: str) -> str:
    try:
        payload = authorization.removeprefix("Bearer ").split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["tid"]
    except (IndexError, ValueError, KeyError):
        return ""


def token_for(tenant_id: str) -> str:
    """A token shaped as Entra's (only `tid` is read here)."""
    body = base64.urlsafe_b64encode(json.dumps({"tid": tenant_id}).encode()).decode()
    return f"e30.{body.rstrip('=')}.sig"


class FakeGraph:
    def __init__(self) -> None:
        self.alerts: dict[str, dict[str, dict[str, Any]]] = {}
        self.chains: dict[str, list[str]] = {}
        self.expired: set[str] = set()
        self.answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []  # next ones
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeGraph:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def put(self, tenant_id: str, alert: dict[str, Any]) -> None:
        with self.lock:
            self.alerts.setdefault(tenant_id, {})[alert["id"]] = dict(alert)

    def expire_all(self) -> None:
        """Every nextLink answered so far stops working."""
        with self.lock:
            self.expired.update(self.chains)

    def answer_next(self, status: int, body: dict[str, Any],
                    headers: dict[str, str] | None = None) -> None:
        self.answers.append((status, headers or {}, body))

    def _page(self, url: str, tenant_id: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        query = parse_qs(urlsplit(url).query)
        with self.lock:
            if self.answers:
                return self.answers.pop(0)
            mine = self.alerts.get(tenant_id, {})
            if "$skiptoken" in query:
                chain, _, offset_text = query["$skiptoken"][0].partition(".")
                if chain in self.expired or chain not in self.chains:
                    return 410, {}, {"error": {"code": "Gone", "message":
                                               "The skip token has expired."}}
                ids, offset = self.chains[chain], int(offset_text)
                top = int(query.get("$top", ["1000"])[0])
            else:
                top = int(query.get("$top", ["1000"])[0])
                if not 1 <= top <= 1000:
                    return 400, {}, {"error": {"code": "BadRequest", "message": "$top"}}
                floor = query.get("$filter", ["lastUpdateDateTime ge 1970"])[0].split(
                    " ge ")[1]
                ids = sorted((i for i, a in mine.items()
                              if a["lastUpdateDateTime"] >= floor),
                             key=lambda i: hashlib.sha256(i.encode()).hexdigest())
                chain, offset = uuid.uuid4().hex, 0
                self.chains[chain] = ids
            page = [mine[i] for i in ids[offset:offset + top] if i in mine]
            body: dict[str, Any] = {"@odata.context": f"{self.base}/v1.0/$metadata#alerts"}
            link = (f"{self.base}{PATH}?$top={top}&$skiptoken={chain}.{offset + top}"
                    if offset + top < len(ids) else "")
            before = len(self.requests) % 2 == 0
            if link and before:
                body["@odata.nextLink"] = link
            body["value"] = page
            if link and not before:
                body["@odata.nextLink"] = link
            return 200, {}, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if urlsplit(self.path).path != PATH:
                    status, headers, body = 404, {}, {"error": {"code": "NotFound"}}
                else:
                    status, headers, body = fake._page(
                        self.path, _tid(self.headers.get("Authorization", "")))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def running() -> Iterator[FakeGraph]:
    fake = FakeGraph().start()
    try:
        yield fake
    finally:
        fake.stop()
