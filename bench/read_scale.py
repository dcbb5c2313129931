"""The read side at MSSP scale: N tenants x M alerts, each page over HTTP from the app on
the local host, against one raw Table query of 50 rows in the same run, and against raw
reads returning as many rows as the page read (`x_same_rows`, the issue's reference).

Seeding goes through the worker's own write path: the simulator holds each tenant's
alerts, the Ingestor fetches them (Alerts rows, version index, outbox, cursor as in
production), and the outbox events become SIEM feed entries as the feed writes them
(`entry_entity` and its tenant's view, without the stored-alert copy: the pull reads the
same rows), AlertIndex entries as the relay writes them (`index_changes`,
`AlertIndex.record`), counted into the tenant's tally and summary as the relay counts
them. Tenants
are added per step, so `--tenants 50,200` measures at 50, then seeds 150 more.

Per page: latency (median of `--repeat`), storage requests and rows read (counted at the
HTTP layer: every Table request the app's process sends while the page is served, and the
entities in their answers; rows Azure scans to answer a filtered query are not seen).

    .venv/bin/python -m bench.read_scale --tenants 50,200 --alerts 400
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import random
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from html import unescape
from typing import Any

import requests

from bench.harness import ROOT, Env, environment
from devhost.config import HostConfig, QueueOptions
from devhost.host import Host
from shared import codec
from shared.ingest.index_feed import index_changes
from shared.ingest.tally import TallyKeeper
from shared.messages import AlertEvent, FetchRequest
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens
from shared.model import Tenant
from shared.services import ingestor_for
from shared.storage import tables
from shared.storage.alert_index import AlertIndex
from shared.storage.siem_feed import entry_entity, view_entity
from shared.storage.tenant_directory import BUILT
from shared.storage.tenant_summaries import TenantSummaries
from shared.storage.tenants import PARTITION, TenantRepository

FUNCTION_KEY = "bench-function-key"
PORTAL_GROUP = "6f1f8a52-0c4e-4a43-9b1e-5d2b7c9e0a11"
_send = requests.Session.send


@dataclasses.dataclass
class Meter:
    """Storage requests and the entities they returned, of this process, while on."""

    tables_at: str = "devstoreaccount1"  # the Table endpoint (queue polls are not counted)
    on: bool = False
    requests: int = 0
    rows: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def install(self) -> None:
        meter = self

        def send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            response = _send(session, request, **kwargs)
            if meter.on and (request.url or "").startswith(meter.tables_at):
                rows = 0
                if request.method == "GET" and "json" in response.headers.get(
                        "Content-Type", ""):  # a Table query or get
                    try:
                        body = json.loads(response.content or b"{}")
                        rows = len(body["value"]) if "value" in body else 1
                    except ValueError:
                        rows = 0
                with meter.lock:
                    meter.requests += 1
                    meter.rows += rows
            return response

        requests.Session.send = send  # type: ignore[method-assign]

    @contextmanager
    def counting(self) -> Iterator[Meter]:
        with self.lock:
            self.requests = self.rows = 0
        self.on = True
        try:
            yield self
        finally:
            self.on = False


def principal() -> str:
    import base64

    claims = [{"typ": "preferred_username", "val": "bench@mssp.example"},
              {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier",
               "val": "0b5e3c1d-1111-4a2b-9c3d-000000000001"},
              {"typ": "groups", "val": PORTAL_GROUP}]
    body = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(body).encode()).decode()


def app_settings(env: Env) -> dict[str, str]:
    return env.environ(
        FETCH_PAGE_SIZE="1000", FETCH_OVERLAP_SECONDS="0",
        # no fan-out, digest or push during the measurement
        FETCH_SCHEDULE="0 0 0 1 1 *", DIGEST_SCHEDULE="0 0 0 1 1 *",
        SIEM_PUSH_SCHEDULE="0 0 0 1 1 *", POISON_DRAIN_SCHEDULE="0 0 0 1 1 *",
        DEVHOST_FUNCTION_KEY=FUNCTION_KEY, DEVHOST_MASTER_KEY="bench-master-key",
        MSSP_NAME="Bench MSSP", OPS_EMAIL="ops@mssp.example",
        PORTAL_ALLOWED_GROUPS=PORTAL_GROUP, PORTAL_KEY="bench-portal-key-0123456")


class Seeder:
    """Tenants and their alerts, written by the worker."""

    def __init__(self, env: Env) -> None:
        self.env = env
        settings = env.settings(FETCH_PAGE_SIZE="1000", FETCH_OVERLAP_SECONDS="0")
        self.client_id = settings.identity.client_id
        self.ingestor = ingestor_for(settings, Tokens(settings.identity),
                                     DefenderClient(120, settings.identity.ca_bundle))
        self.feed = tables.table(env.storage, tables.SIEM_FEED)
        self.index = AlertIndex(tables.table(env.storage, tables.ALERT_INDEX))
        self.summaries = TenantSummaries(tables.table(env.storage, tables.TENANT_SUMMARIES))
        self.tenants: list[str] = []
        self.stamp = int(time.time() * 1e6) - 5_400_000_000
        self.spread = random.Random(7)

    def add(self, count: int, alerts: int) -> float:
        started = time.perf_counter()
        new = []
        for _ in range(count):
            name = f"Bench Tenant {len(self.tenants) + len(new):04d}"
            created = self.env.sim.add_tenant(name, consent=[self.client_id])
            self.env.sim.generate(created["id"], alerts, age_seconds=3_600)
            self.ingestor.tenants.add(Tenant(created["id"], name))
            new.append(created["id"])
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda t: self._fetch(t, alerts), new))
        self.tenants += new
        return time.perf_counter() - started

    def _fetch(self, tenant_id: str, alerts: int) -> None:
        stored = 0
        while stored < alerts:
            run = self.ingestor.run(FetchRequest(tenant_id, stored > 0))
            if run.outcome not in ("success", "partial"):
                raise RuntimeError(f"seeding {tenant_id}: {run.outcome} {run.error}")
            stored += run.new
            if run.outcome == "success":
                break
        self._feed_outbox(tenant_id)

    def _feed_outbox(self, tenant_id: str) -> None:
        """The tenant's outbox events as AlertIndex and SIEM feed entries, then the
        outbox emptied (what the relay and the feed function do, without the queue
        hops)."""
        state = self.ingestor.states.of(tenant_id)
        tally = TallyKeeper(state, self.summaries)
        for row_key in state.outbox_rows():
            loaded = state.outbox(row_key)
            if loaded is None:
                continue
            events, _, etag = loaded
            self.index.record(*index_changes(events))
            by_bucket: dict[str, list[Any]] = {}
            for raw in events:
                event = AlertEvent.parse(codec.dumps(raw) if not isinstance(raw, bytes)
                                         else raw)
                # tenants' entries interleaved over the hour, as they arrive in production
                entity = entry_entity(event, self.stamp + self.spread.randrange(3_600_000_000))
                by_bucket.setdefault(entity["PartitionKey"], []).append(("upsert", entity))
                view = view_entity(entity)
                by_bucket.setdefault(view["PartitionKey"], []).append(("upsert", view))
            for ops in by_bucket.values():
                for start in range(0, len(ops), 100):
                    self.feed.submit_transaction(ops[start:start + 100])
            etag = tally.record(row_key, len(events), etag, events)
            state.delete_outbox(row_key, etag)
        tally.publish(tenant_id)


def start_host(env: Env) -> Host:
    """function_app on the local host, imported afresh (a Host loads an app once)."""
    from shared import services
    from shared.config import get_settings

    for name in [m for m in sys.modules if m == "function_app" or m.startswith("functions")]:
        del sys.modules[name]
    get_settings.cache_clear()
    for name in dir(services):
        with contextlib.suppress(AttributeError):
            getattr(services, name).cache_clear()
    for key, value in app_settings(env).items():
        os.environ[key] = value
    config = dataclasses.replace(HostConfig.load(ROOT), queues=QueueOptions(
        max_polling_interval=2, visibility_timeout=0, max_dequeue_count=3))
    host = Host(ROOT, "function_app:app", http_port=0, host_id="b" + uuid.uuid4().hex[:8],
                config=config)
    os.environ["PUBLIC_BASE_URL"] = host.http.base_url
    host.start()
    return host


def measure(meter: Meter, session: requests.Session, url: str, repeat: int
            ) -> dict[str, Any]:
    """Latency (median), and the requests and rows of the first view and of the last
    (they differ where a page keeps something for later views: the chart's totals)."""
    times = []
    counted: tuple[int, int] = (0, 0)
    for i in range(repeat):
        with meter.counting():
            started = time.perf_counter()
            response = session.get(url, timeout=600)
            times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        if i == 0:
            counted = (meter.requests, meter.rows)
    return {"ms": round(statistics.median(times) * 1000, 1), "requests": counted[0],
            "rows": counted[1], "requests_last": meter.requests, "rows_last": meter.rows,
            "body": response.text}


def raw_reference(env: Env, tenant_id: str, repeat: int) -> float:
    """One raw Table query returning 50 rows (one tenant's alerts)."""
    client = tables.table(env.storage, tables.ALERTS)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = next(client.query_entities("PartitionKey eq @pk", parameters={
            "pk": tenant_id}, results_per_page=50).by_page())
        rows = list(page)
        times.append(time.perf_counter() - started)
    assert len(rows) == 50, len(rows)
    return round(statistics.median(times) * 1000, 1)


def same_rows_reference(env: Env, rows: int, repeat: int) -> float:
    """Raw Table reads returning `rows` rows (of the Alerts table, 1,000 a request): the
    issue's "one raw query returning the same rows" for a page that read that many."""
    client = tables.table(env.storage, tables.ALERTS)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        got = len(list(itertools.islice(client.query_entities(
            "PartitionKey ne ''", results_per_page=min(max(rows, 1), 1000)), rows)))
        times.append(time.perf_counter() - started)
    assert got == rows, (got, rows)
    return round(statistics.median(times) * 1000, 1)


def feed_references(env: Env, tenant_id: str, repeat: int) -> list[dict[str, Any]]:
    """One tenant's first 50 feed entries of the newest seeded hour read directly: from
    its view (what a tenant-filtered pull now reads) and by the scan of the hour's whole
    bucket with a Tenant filter (what it read before), with the rows each returned."""
    client = tables.table(env.storage, tables.SIEM_FEED)
    bucket = max(e["PartitionKey"] for e in client.query_entities(
        "PartitionKey gt @lo and PartitionKey lt @hi", parameters={
            "lo": "20", "hi": "21"}, select=["PartitionKey"],
        results_per_page=1000) if "|" not in e["PartitionKey"])
    found = []
    for name, query, params in (
            ("feed, one tenant: its view (direct query)", "PartitionKey eq @pk",
             {"pk": f"{bucket}|{tenant_id}"}),
            ("feed, one tenant: bucket scan (direct query)",
             "PartitionKey eq @pk and Tenant eq @t", {"pk": bucket, "t": tenant_id})):
        times, rows = [], 0
        for _ in range(max(repeat, 3)):
            started = time.perf_counter()
            rows = len(list(itertools.islice(client.query_entities(
                query, parameters=params, results_per_page=50), 50)))
            times.append(time.perf_counter() - started)
        found.append({"page": name, "ms": round(statistics.median(times) * 1000, 1),
                      "requests": 1, "rows": rows})
    return found


def pages(base: str, tenant_id: str, since: str) -> list[tuple[str, str]]:
    return [("portal overview", f"{base}/portal"),
            ("alerts, first page", f"{base}/portal/alerts"),
            ("alerts, severity High", f"{base}/portal/alerts?severity=High"),
            ("alerts, one tenant", f"{base}/portal/alerts?tenant={tenant_id}"),
            ("SIEM pull (50)", f"{base}/siem/alerts?since={since}&limit=50"),
            ("SIEM pull, one tenant (50)",
             f"{base}/siem/alerts?since={since}&limit=50&tenant={tenant_id}")]


def without_directory(env: Env, meter: Meter, session: requests.Session, base: str,
                      repeat: int) -> list[dict[str, Any]]:
    """The overview and the alerts page as the previous version read them (the whole
    registry, every summary): the tenant directory's "complete" row removed, so the pages
    fall back; then put back (`rebuild_directory`, what `tools.backfill` does)."""
    registry = TenantRepository(tables.table(env.storage, tables.TENANTS))
    registry.client.delete_entity(PARTITION, BUILT)
    try:
        results = []
        for name, url in (("portal overview", f"{base}/portal"),
                          ("alerts, first page", f"{base}/portal/alerts")):
            found = measure(meter, session, url, repeat)
            results.append({"page": f"{name}, without the directory (before)",
                            **{k: v for k, v in found.items() if k != "body"}})
        return results
    finally:
        registry.rebuild_directory()


def run_step(env: Env, meter: Meter, base: str, tenants: list[str], repeat: int
             ) -> list[dict[str, Any]]:
    session = requests.Session()
    session.headers.update({"X-MS-CLIENT-PRINCIPAL": principal(),
                            "x-functions-key": FUNCTION_KEY})
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2 * 3600))
    tenant_id = tenants[len(tenants) // 2]
    raw = raw_reference(env, tenant_id, max(repeat, 5))
    results = []
    for name, url in pages(base, tenant_id, since):
        found = measure(meter, session, url, repeat)
        results.append({"page": name, **{k: v for k, v in found.items() if k != "body"}})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if name.startswith("SIEM"):
            results[-1]["shown"] = len(json.loads(found["body"])["items"])
        if name == "portal overview":
            following = re.search(r'id="next-tenants" href="([^"]*)"', found["body"])
            if following:
                link = base.rsplit("/api", 1)[0] + unescape(following.group(1))
                found = measure(meter, session, link, repeat)
                results.append({"page": "portal overview, next tenants",
                                **{k: v for k, v in found.items() if k != "body"}})
        if name == "alerts, first page":
            older = re.search(r'href="([^"]*before=[^"]*)"', found["body"])
            if older:
                link = unescape(older.group(1))
                link = link if link.startswith("http") else base.rsplit("/api", 1)[0] + link
                found = measure(meter, session, link, repeat)
                results.append({"page": 'alerts, "Older alerts"',
                                **{k: v for k, v in found.items() if k != "body"}})
    results += feed_references(env, tenant_id, repeat)
    results += without_directory(env, meter, session, base, repeat)
    for item in results:
        item["raw_ms"] = raw
        item["x_raw"] = round(item["ms"] / raw, 1)
        same = same_rows_reference(env, item["rows"], max(repeat, 3))
        item["same_rows_ms"] = same
        item["x_same_rows"] = round(item["ms"] / same, 1) if same else None
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", default="50,200")
    parser.add_argument("--alerts", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    steps = [int(n) for n in args.tenants.split(",")]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mssp_hub").setLevel(logging.WARNING)
    report: dict[str, Any] = {"alerts_per_tenant": args.alerts, "steps": []}
    with environment() as env:
        conn = env.storage.connection_string or ""
        meter = Meter(conn.split("TableEndpoint=", 1)[1].split(";", 1)[0])
        meter.install()
        seeder = Seeder(env)
        for total in steps:
            seeded = seeder.add(total - len(seeder.tenants), args.alerts)
            for name in (tables.RELAY_QUEUE, tables.NOTIFY_QUEUE, tables.SIEM_QUEUE,
                         tables.FETCH_QUEUE):  # nothing for the app to do meanwhile
                with contextlib.suppress(Exception):
                    tables.queue(env.storage, name).clear_messages()
            host = start_host(env)  # started after seeding: its relay stays out of it
            try:
                results = run_step(env, meter, f"{host.http.base_url}/api",
                                   seeder.tenants, args.repeat)
            finally:
                host.stop()
            step = {"tenants": total, "alerts": total * args.alerts,
                    "seed_s": round(seeded, 1), "pages": results}
            report["steps"].append(step)
            print(json.dumps(step), flush=True)
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
