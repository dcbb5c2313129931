"""Correlation (issue 22): what indexing an alert's indicators costs next to storing the
alert alone, and what looking one indicator up costs as the sightings outside it grow.

    .venv/bin/python -m bench.correlation [--alerts 1000] [--tenants 500]
                                          [--sightings 10000,100000,1000000]

1. Indexing, on Azurite, the same run: `--alerts` alerts over 50 tenants, each with five
   indicators (a file's SHA256 and SHA1, a public IP, a URL and its domain), a fifth of
   them sharing a campaign's hash. The baseline stores them as ingest does (one
   transaction per tenant's chunk of alert rows); correlation indexes their events as the
   correlate trigger does (`Correlation.index`, one call per tenant's chunk). Storage
   requests counted at the HTTP layer (bench.transactions.counting), wall time.
2. Lookup: sightings of other indicators across `--tenants` tenants loaded with batched
   transactions (100 a partition) up to each size, and as many sightings of the looked-up
   indicator outside its window (older) as 1% of them; the indicator's own sightings (50,
   over 25 tenants) stay the same. At each size: `lookup(indicator, since=window)` and
   `cluster(indicator)`, median of 30 runs, and the requests each makes; beside them, as
   the control, a query of an indicator with no sightings and a point read: Azurite
   evaluates a query's filter over the table's every entity (it has no partition index),
   so what grows with the table in both the lookup and the control is Azurite's scan,
   not rows the lookup reads (Azure serves a partition range from its index).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.transactions import counting
from devhost.azurite import Azurite
from shared.config import CorrelationSettings
from shared.correlation.model import SHA256, Indicator, Sighting, TenantReach
from shared.correlation.service import Correlation
from shared.ingest.events import build_event
from shared.messages import AlertEvent
from shared.storage import batch, tables
from shared.storage.alert_rows import alert_rows
from shared.storage.alerts import AlertRepository
from shared.storage.connection import StorageConnection
from shared.storage.correlation import (
    REACH,
    CorrelationStore,
    Head,
    _reach_entity,
    _sighting_entity,
)
from shared.storage.queues import EventQueue

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = [f"{n:064x}" for n in range(1, 21)]


def _alert(n: int, tenant: str) -> dict[str, Any]:
    day = f"2026-12-0{1 + n % 7}T{n % 24:02d}:00:00.0000000Z"
    own = uuid.uuid5(uuid.NAMESPACE_URL, f"a{n}").hex
    return {"id": f"da{n:07d}", "title": f"Alert {n}", "severity": "High", "status": "New",
            "alertCreationTime": day, "lastUpdateTime": day, "aadTenantId": tenant,
            "evidence": [
                {"entityType": "File", "fileName": "x.exe",
                 "sha256": CAMPAIGN[n % 20] if n % 5 == 0 else own * 2, "sha1": own[:40]
                 if len(own) >= 40 else (own * 2)[:40]},
                {"entityType": "Ip", "ipAddress": f"185.{n % 200}.{n // 200 % 250}.7"},
                {"entityType": "Url", "url": f"https://c{n}.example/p?q={n}"}]}


def _count(seen: dict[str, int]) -> int:
    return sum(seen.values())


def indexing(storage: StorageConnection, ports: set[int], alerts: int) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    repo = AlertRepository(tables.table(storage, f"BenchAlerts{suffix}"))
    store = CorrelationStore(tables.table(storage, f"BenchCorr{suffix}"),
                             tables.table(storage, f"BenchCorrIdx{suffix}"))
    queues = [EventQueue(tables.queue(storage, f"bench-corr-{q}-{suffix}"))
              for q in ("notify", "siem")]
    service = Correlation(store, queues[0], queues[1], CorrelationSettings(), lambda: 50)
    tenants = [str(uuid.uuid4()) for _ in range(50)]
    by_tenant: dict[str, list[dict[str, Any]]] = {t: [] for t in tenants}
    for n in range(alerts):
        tenant = tenants[n % 50]
        by_tenant[tenant].append(_alert(n, tenant))
    started = time.perf_counter()
    with counting(ports) as stored:
        for tenant, docs in by_tenant.items():
            rows = [r for d in docs for r in alert_rows(tenant, d)]
            for start in range(0, len(rows), 100):
                repo.store(rows[start:start + 100])
    store_seconds = time.perf_counter() - started
    events: dict[str, list[AlertEvent]] = {
        t: [build_event(t, f"Tenant {t[:4]}", d, d["lastUpdateTime"], None, [])
            for d in docs] for t, docs in by_tenant.items()}
    started = time.perf_counter()
    with counting(ports) as indexed:
        done = [service.index(chunk) for chunk in events.values()]
    index_seconds = time.perf_counter() - started
    updates = [[dataclasses.replace(e, change="updated") for e in chunk]
               for chunk in events.values()]
    with counting(ports) as same_process:  # later versions of the same alerts
        for chunk in updates:
            service.index(chunk)
    other = Correlation(store, queues[0], queues[1], CorrelationSettings(), lambda: 50)
    with counting(ports) as other_process:  # ... reaching another instance
        for chunk in updates:
            other.index(chunk)
    return {
        "alerts": alerts, "indicators": sum(d.sightings + d.repeated for d in done),
        "cluster_versions": sum(d.versions for d in done),
        "store_requests_per_alert": round(_count(stored) / alerts, 2),
        "store_ms_per_alert": round(store_seconds * 1000 / alerts, 2),
        "index_requests_per_alert": round(_count(indexed) / alerts, 2),
        "index_ms_per_alert": round(index_seconds * 1000 / alerts, 2),
        "requests_ratio": round(_count(indexed) / max(1, _count(stored)), 1),
        "time_ratio": round(index_seconds / store_seconds, 1),
        "update_requests_per_alert_same_process": round(_count(same_process) / alerts, 2),
        "update_requests_per_alert_other_process": round(_count(other_process) / alerts, 2),
        "index_requests": dict(indexed)}


class Loader:
    """Sightings written straight into the table, 100 a transaction (one partition)."""

    def __init__(self, store: CorrelationStore, tenants: list[str]) -> None:
        self.store, self.tenants = store, tenants
        self.loaded = 0
        self.old = 0

    def partition(self, indicator: Indicator, count: int, first: int, day: str) -> None:
        entities = [_sighting_entity(Sighting(
            indicator, self.tenants[(first + i) % len(self.tenants)], "Tenant",
            f"da{first + i:09d}", f"{day}T{(first + i) % 24:02d}:{i % 60:02d}:00.0000000Z",
            "High", "title", "Microsoft Defender for Endpoint")) for i in range(count)]
        for start in range(0, len(entities), 100):
            batch.submit_transaction(self.store.table, [
                ("upsert", e) for e in entities[start:start + 100]])

    def grow(self, target: Indicator, total: int) -> None:
        """Other indicators' sightings up to `total`, and 1% as old ones of `target`."""
        while self.loaded < total:
            other = Indicator(SHA256, uuid.uuid4().hex * 2)
            self.partition(other, 100, self.loaded, "2026-11-20")
            self.loaded += 100
        want_old = total // 100
        if want_old > self.old:
            self.partition(target, want_old - self.old, 1_000_000 + self.old, "2026-10-01")
            self.old = want_old


def lookups(storage: StorageConnection, ports: set[int], tenants: int, sizes: list[int]
            ) -> list[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    store = CorrelationStore(tables.table(storage, f"BenchLook{suffix}"),
                             tables.table(storage, f"BenchLookIdx{suffix}"))
    service = Correlation(store, EventQueue(tables.queue(storage, f"bench-l-{suffix}")),
                          EventQueue(tables.queue(storage, f"bench-m-{suffix}")),
                          CorrelationSettings(), lambda: tenants)
    names = [str(uuid.uuid4()) for _ in range(tenants)]
    target = Indicator(SHA256, "f" * 64)
    loader = Loader(store, names)
    loader.partition(target, 50, 0, "2026-12-02")  # the match: 50 sightings, 25 tenants
    reach = [TenantReach(names[i], "Tenant", "2026-12-02T00:00:00.0000000Z",
                         "2026-12-02T23:00:00.0000000Z", [], 2, "High") for i in range(25)]
    head = Head(target, version=24, members=[r.tenant_id for r in reach], reach=25,
                first_seen="2026-12-02T00:00:00.0000000Z",
                last_seen="2026-12-02T23:00:00.0000000Z", alert_count=50)
    batch.submit_transaction(store.table, [("upsert", _reach_entity(target.key, r))
                                           for r in reach] + [("upsert", head.entity())])
    assert all(e["RowKey"].startswith(REACH) for e in
               [dict(x) for x in store.table.query_entities(
                   "PartitionKey eq @p and RowKey gt 'b' and RowKey lt 'c'",
                   parameters={"p": target.key})])
    out = []
    for size in sizes:
        started = time.perf_counter()
        loader.grow(target, size)
        load_seconds = time.perf_counter() - started
        look, clus = [], []
        with counting(ports) as seen_lookup:
            for _ in range(30):
                t = time.perf_counter()
                found, _ = service.lookup(target, since="2026-11-25T00:00:00Z", limit=100)
                look.append(time.perf_counter() - t)
        with counting(ports) as seen_cluster:
            for _ in range(30):
                t = time.perf_counter()
                cluster = service.cluster(target)
                clus.append(time.perf_counter() - t)
        empty, point = [], []
        nowhere = Indicator(SHA256, "0" * 64)
        for _ in range(30):  # Azurite's own cost of a query: one that matches nothing
            t = time.perf_counter()
            store.sightings(nowhere, limit=100)
            empty.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.table.get_entity(target.key, "a")
            point.append(time.perf_counter() - t)
        out.append({"sightings": size + loader.old + 50, "outside_match": size + loader.old,
                    "load_seconds": round(load_seconds, 1), "found": len(found),
                    "cluster_reach": cluster.reach if cluster else 0,
                    "lookup_ms_median": round(statistics.median(look) * 1000, 2),
                    "lookup_requests": _count(seen_lookup) / 30,
                    "cluster_ms_median": round(statistics.median(clus) * 1000, 2),
                    "cluster_requests": _count(seen_cluster) / 30,
                    "empty_query_ms_median": round(statistics.median(empty) * 1000, 2),
                    "point_read_ms_median": round(statistics.median(point) * 1000, 2)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--sightings", default="10000,100000,1000000")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="mssp-bench-corr-"))
    azurite = Azurite(ROOT, log_path=state / "azurite.log").start()
    try:
        storage = StorageConnection.from_env(
            {"AzureWebJobsStorage": azurite.connection_string}, "AzureWebJobsStorage")
        ports = {azurite.ports["Table"], azurite.ports["Queue"]}
        print(json.dumps({"indexing": indexing(storage, ports, args.alerts)}), flush=True)
        sizes = [int(s) for s in args.sightings.split(",")]
        result = lookups(storage, ports, args.tenants, sizes)
        print(json.dumps({"lookup": result}, indent=1))
    finally:
        with contextlib.suppress(Exception):
            azurite.stop()


if __name__ == "__main__":
    main()
