"""SIEM delivery: events/s to each output from one worker against the same run's raw
send of the same events (no feed), and pull-API page latency with 100,000 stored alerts
against a raw Table query of the same page.

python -m bench.siem [--stored 100000] [--events 2000]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from bench.harness import environment
from devtools.rsyslog import Rsyslog
from devtools.simulator.alerts import AlertFactory
from shared import timefmt
from shared.ingest.events import build_event, tracked
from shared.messages import AlertEvent
from shared.services import feed_on, siem_delivery_on
from shared.siem.feed import Feed, Filters, bucket_of
from shared.siem.outputs import parse_outputs
from shared.siem.pull import parse_query, pull
from shared.siem.senders import sender_for
from shared.storage.siem_feed import entry_entity


def alert_events(tenants: list[str], n: int) -> list[AlertEvent]:
    out = []
    factories = [AlertFactory(t, "bench.example") for t in tenants]
    base = int(time.time() * 1e7)
    for i in range(n):
        tenant = tenants[i % len(tenants)]
        alert = factories[i % len(tenants)].make(base + i)
        version = timefmt.normalize(alert["lastUpdateTime"])
        out.append(build_event(tenant, f"Tenant {i % len(tenants)}", alert, version, None,
                               tracked(alert, version)))
    return out


def http_sink() -> tuple[str, Any]:
    def app(environ: dict, start_response: Any) -> Any:
        Request(environ).get_data()
        return Response('{"text":"Success","code":0}', 200,
                        content_type="application/json")(environ, start_response)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/services/collector/event", server


def outputs_bench(storage: Any, count: int) -> dict[str, Any]:
    rsyslog = Rsyslog(Path(tempfile.mkdtemp(prefix="bench-rsyslog-"))).start()
    url, server = http_sink()
    tenant = str(uuid.uuid4())
    outputs = [
        {"name": "syslog-tcp", "type": "syslog", "host": "127.0.0.1",
         "port": rsyslog.tcp_port, "batch_size": 500},
        {"name": "syslog-tls", "type": "syslog", "host": "127.0.0.1", "protocol": "tls",
         "port": rsyslog.tls_port, "ca_file": str(rsyslog.ca_file), "batch_size": 500},
        {"name": "splunk-hec", "type": "splunk_hec", "url": url, "batch_size": 500},
        {"name": "webhook", "type": "webhook", "url": url, "batch_size": 500},
        {"name": "webhook-ecs", "type": "webhook", "url": url, "format": "ecs",
         "batch_size": 500}]
    for o in outputs:
        o["name"] += "-" + uuid.uuid4().hex[:6]
        o["tenants"] = [tenant]
    parsed = parse_outputs(json.dumps(outputs), {"SIEM_HEC_TOKEN": "t",
                                                 "SIEM_WEBHOOK_SECRET": "s" * 20})
    feed = feed_on(storage, 1, 7)
    delivery = siem_delivery_on(storage, feed, parsed)
    for o in parsed:
        delivery.deliver(o.name)
    events = alert_events([tenant], count)
    started = time.perf_counter()
    for e in events:
        feed.append(e)
    append_rate = count / (time.perf_counter() - started)
    time.sleep(1.2)
    feed.read(feed.start(), count, Filters(tenants=(tenant,)))  # warm-up, not measured
    results: dict[str, Any] = {"feed_appends_per_s": round(append_rate, 1)}
    for o in parsed:
        started = time.perf_counter()
        outcome = delivery.deliver(o.name)
        rate = outcome.delivered / (time.perf_counter() - started)
        assert outcome.delivered == count, outcome
        fed = feed.read(feed.start(), count, delivery_filters(o))
        sender = sender_for(o)
        started = time.perf_counter()
        for i in range(0, count, o.batch_size):
            sender.send(fed.events[i:i + o.batch_size])
        raw = count / (time.perf_counter() - started)
        results[o.name.rsplit("-", 1)[0]] = {"events_per_s": round(rate, 1),
                                             "raw_send_per_s": round(raw, 1),
                                             "vs_raw": round(rate / raw, 2)}
    server.shutdown()
    rsyslog.stop()
    return results


def delivery_filters(output: Any) -> Filters:
    return Filters(tenants=tuple(sorted(output.tenants)))


def store(feed: Feed, events: list[AlertEvent], hours: int) -> None:
    """Write feed entries spread over `hours` directly, 100 per transaction."""
    now = feed.now_us() - 60_000_000
    span = hours * 3_600_000_000
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for i, e in enumerate(events):
        stamp = now - span + i * span // len(events)
        entity = entry_entity(e, stamp)
        by_bucket.setdefault(entity["PartitionKey"], []).append(entity)
    batches = [[("upsert", x) for x in bucket[i:i + 100]] for bucket in by_bucket.values()
               for i in range(0, len(bucket), 100)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(feed.entries.client.submit_transaction, batches))


def pull_bench(storage: Any, stored: int) -> dict[str, Any]:
    feed = feed_on(storage, 5, 7)
    tenants = [str(uuid.uuid4()) for _ in range(50)]
    started = time.perf_counter()
    store(feed, alert_events(tenants, stored), hours=48)
    loaded = time.perf_counter() - started

    def timed(params: dict[str, str], pages: int) -> tuple[float, int]:
        query = parse_query(params)
        times, token, seen = [], None, 0
        for _ in range(pages):
            q = parse_query({**params, "continuation": token}) if token else query
            t = time.perf_counter()
            items, token, more = pull(feed, q)
            times.append(time.perf_counter() - t)
            seen += len(items)
            if not more:
                break
        return statistics.median(times) * 1000, seen

    since = (time.time() - 49 * 3600)
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    first, _ = timed({"since": start, "limit": "200"}, 1)
    paging, seen = timed({"since": start, "limit": "200"}, 25)
    tenant, _ = timed({"since": start, "limit": "200", "tenant": tenants[7]}, 10)
    high, _ = timed({"since": start, "limit": "200", "severity": "High"}, 10)
    big, _ = timed({"since": start, "limit": "1000"}, 5)
    # baseline: the same 200 entities by a plain query of one partition
    bucket = bucket_of(feed.now_us() - 24 * 3_600_000_000)
    raw_times = []
    for _ in range(10):
        t = time.perf_counter()
        rows = list(feed.entries.client.query_entities(
            "PartitionKey eq @pk", parameters={"pk": bucket},
            results_per_page=200).by_page().__next__())
        raw_times.append(time.perf_counter() - t)
    raw = statistics.median(raw_times) * 1000
    assert len(rows) >= min(200, stored // 50), len(rows)
    return {"stored": stored, "load_s": round(loaded, 1),
            "page_200_first_ms": round(first, 1), "page_200_paging_ms": round(paging, 1),
            "pages_read": seen // 200,
            "page_200_one_tenant_of_50_ms": round(tenant, 1),
            "page_200_severity_high_ms": round(high, 1), "page_1000_ms": round(big, 1),
            "raw_query_200_ms": round(raw, 1),
            "paging_vs_raw": round(paging / raw, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000)
    args = parser.parse_args()
    with environment() as env:
        result = {"outputs": outputs_bench(env.storage, args.events),
                  "pull": pull_bench(env.storage, args.stored)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
