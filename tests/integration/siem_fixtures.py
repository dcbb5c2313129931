"""SIEM test kit: a real rsyslog, HTTP receivers for HEC and webhooks, synthetic events."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from devtools.rsyslog import Rsyslog
from shared.messages import AlertEvent
from shared.services import feed_on
from shared.siem.feed import Feed, Filters, Position
from shared.storage.connection import StorageConnection


@pytest.fixture(scope="session")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog")).start()
    yield server
    server.stop()


@dataclass
class Receiver:
    """An HTTP endpoint that records each request; `status` decides the answer."""

    status: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"text": "Success", "code": 0})
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        self.requests.append((dict(request.headers), request.get_data()))
        return Response(json.dumps(self.answer), self.status,
                        content_type="application/json")(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[Any]:
    """Start HTTP receivers on free loopback ports: `receiver()` -> Receiver with .url."""
    servers = []

    def start(path: str = "/") -> Receiver:
        app = Receiver()
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        app.url = f"http://127.0.0.1:{server.server_port}{path}"
        servers.append(server)
        return app

    yield start
    for server in servers:
        server.shutdown()


def event(tenant: str, n: int, version: str = "2026-11-30T10:00:00.0000000Z",
          **alert: Any) -> AlertEvent:
    """A SIEM event as the relay sends it (summary only: no stored alert row)."""
    alert_id = alert.pop("id", f"da{n:06d}_{uuid.uuid4().hex[:6]}")
    body = {"id": alert_id, "title": f"Alert {n}", "severity": "Medium", "status": "New",
            "category": "Malware", "lastUpdateTime": version, "computerDnsName": f"pc{n}",
            "mitreTechniques": ["T1059"], **alert}
    return AlertEvent(tenant, "Tenant " + tenant[:4], alert_id, version, "new", {}, body)


def drain(feed: Feed, filters: Filters, limit: int = 50, start: Position | None = None
          ) -> tuple[list[dict[str, Any]], Position]:
    """Read pages until the feed says nothing more is waiting."""
    position = start or feed.start()
    seen: list[dict[str, Any]] = []
    while True:
        page = feed.read(position, limit, filters)
        seen += page.events
        position = page.position
        if not page.more:
            return seen, position


def feed_for(storage: StorageConnection, settle: int = 1) -> Feed:
    """A feed read `settle` seconds behind now (the app's minimum is 5; tests wait less)."""
    return feed_on(storage, settle, 7)
