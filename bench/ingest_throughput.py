"""Ingest throughput, alerts/s from the simulator to Table storage with one worker, against
two references measured in the same run on the same alerts:
  naive: fetch, then one upsert per alert (no batching, no change detection);
  raw:   batched transactions of the same entities, no fetch at all (the storage's limit).

python -m bench.ingest_throughput [--alerts 5000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import requests
from azure.data.tables import UpdateMode

from bench.harness import environment
from shared.defender import DefenderClient
from shared.identity import Tokens
from shared.ingest import Ingestor
from shared.messages import FetchRequest
from shared.model import Tenant
from shared.storage import tables
from shared.storage.alert_rows import alert_rows, transactions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=5000)
    args = parser.parse_args()
    with environment() as env:
        settings = env.settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="0")
        tokens = Tokens(settings.identity)
        client = DefenderClient(120, settings.identity.ca_bundle)
        ingestor = Ingestor(settings, tokens, client)
        created = env.sim.add_tenant("Bench Co", consent=[settings.identity.client_id])
        tenant_id = created["id"]
        env.sim.generate(tenant_id, args.alerts, age_seconds=3600)
        ingestor.tenants.add(Tenant(tenant_id, "Bench Co"))

        # the pipeline: fetch, change detection, rows, outbox, cursor
        started = time.perf_counter()
        run = ingestor.run(FetchRequest(tenant_id))
        pipeline_s = time.perf_counter() - started
        assert run.new == args.alerts, run

        # the same alerts, as the references see them
        token = tokens.token(tenant_id)
        alerts = requests.get(f"{settings.identity.api_base()}/api/alerts",
                              params={"$top": 10000, "$expand": "evidence"},
                              headers={"Authorization": f"Bearer {token}"},
                              verify=settings.identity.ca_bundle, timeout=300).json()["value"]
        naive_table = tables.table(env.storage, tables.ALERTS)

        started = time.perf_counter()
        fetched = client.list_alerts(settings.identity.api_base(), token,
                                     filter_="lastUpdateTime ge 2000-01-01T00:00:00Z",
                                     top=10000)
        for alert in fetched:
            for entity in alert_rows("naive-" + uuid.uuid4().hex[:6], alert):
                naive_table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        naive_s = time.perf_counter() - started

        partition = "raw-" + uuid.uuid4().hex[:6]
        groups = [alert_rows(partition, a) for a in alerts]
        started = time.perf_counter()
        for batch in transactions(groups):
            naive_table.submit_transaction([("upsert", e, {"mode": UpdateMode.REPLACE})
                                            for e in batch])
        raw_s = time.perf_counter() - started

        n = args.alerts
        result = {
            "alerts": n,
            "pipeline_alerts_per_s": round(n / pipeline_s),
            "naive_alerts_per_s": round(n / naive_s),
            "raw_batched_alerts_per_s": round(n / raw_s),
            "pipeline_vs_naive": round(naive_s / pipeline_s, 2),
            "pipeline_vs_raw": round(raw_s / pipeline_s, 2),
            "api_calls": run.api_calls,
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
