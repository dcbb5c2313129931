"""What telling the MSSP's own changes costs: a fetch of N updated alerts with the marks
consulted against the same fetch without them (same run, same Azurite and simulator),
and `OwnChanges.expect` / `store` per call. Storage requests counted at the HTTP layer
(bench.transactions.counting).

    .venv/bin/python -m bench.own_changes [--alerts 1000] [--stores 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from bench.harness import environment
from bench.transactions import _ports, counting

ANN = {"id": "oid-bench", "name": "Bench Analyst", "via": "entra"}


def _fetch_updates(env: Any, ingestor: Any, name: str, alerts: int, own: Any,
                   ports: set[int]) -> dict[str, Any]:
    from shared.messages import FetchRequest
    from shared.model import Tenant

    tenant_id = env.sim.add_tenant(name, consent=[env.info["client_id"]])["id"]
    ingestor.tenants.add(Tenant(tenant_id, name))
    env.sim.generate(tenant_id, alerts, age_seconds=600)
    assert ingestor.run(FetchRequest(tenant_id)).new == alerts
    ids = [a["id"] for a in env.sim.alerts(tenant_id)]
    own.expect(tenant_id, ids[::2], {"status": "Resolved"}, ANN)  # half of them ours
    for alert_id in ids:
        env.sim.update_alert(tenant_id, alert_id, {"status": "Resolved"})
    started = time.perf_counter()
    with counting(ports) as seen:
        run = ingestor.run(FetchRequest(tenant_id))
    assert run.changed == alerts, run
    return {"seconds": round(time.perf_counter() - started, 2),
            "storage_requests": sum(seen.values()),
            "marks_queries": seen.get("table OwnChangeMarks query", 0)}


def measure(alerts: int, stores: int) -> dict[str, Any]:
    from shared.ingest.worker import Ingestor
    from shared.messages import FetchRequest
    from shared.microsoft.defender import DefenderClient
    from shared.microsoft.identity import Tokens
    from shared.model import Tenant
    from shared.services import ingestor_for, own_changes_on

    with environment() as env:
        settings = env.settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="300")
        ingestor = ingestor_for(settings, Tokens(settings.identity),
                                DefenderClient(120, settings.identity.ca_bundle))
        # the same worker without the marks (the tree before own changes, as to storage)
        without = Ingestor(settings, ingestor.tokens, ingestor.client,
                           dataclasses.replace(_stores(ingestor), own_marks=None))
        own = own_changes_on(env.storage)
        ports = _ports(env.storage.connection_string or "")
        results: dict[str, Any] = {"alerts": alerts}
        results["fetch_without_marks"] = _fetch_updates(env, without, "Plain Co", alerts,
                                                        own, ports)
        results["fetch_with_marks"] = _fetch_updates(env, ingestor, "Marked Co", alerts,
                                                     own, ports)
        # expect for a bulk of `alerts`, then store one PATCH answer at a time
        tenant_id = env.sim.add_tenant("Store Co", consent=[env.info["client_id"]])["id"]
        ingestor.tenants.add(Tenant(tenant_id, "Store Co"))
        env.sim.generate(tenant_id, stores, age_seconds=600)
        assert ingestor.run(FetchRequest(tenant_id)).new == stores
        ids = [a["id"] for a in env.sim.alerts(tenant_id)]
        with counting(ports) as seen:
            own.expect(tenant_id, [f"bulk{n}" for n in range(alerts)],
                       {"status": "Resolved"}, ANN)
        results["expect_bulk_requests"] = sum(seen.values())
        answers = [env.sim.update_alert(tenant_id, a, {"status": "Resolved"}) for a in ids]
        started = time.perf_counter()
        with counting(ports) as seen:
            stored = [own.store(tenant_id, answer, ANN) for answer in answers]
        assert all(s.event for s in stored), stored[:3]
        results["store_ms_each"] = round((time.perf_counter() - started) * 1000 / stores, 1)
        results["store_requests_each"] = round(sum(seen.values()) / stores, 1)
        results["store_kinds"] = dict(seen)
    return results


def _stores(ingestor: Any) -> Any:
    from shared.ingest.worker import IngestStores

    return IngestStores(ingestor.tenants, ingestor.alerts, ingestor.states, ingestor.runs,
                        ingestor.app_health, ingestor.fetch_queue, ingestor.relay_queue,
                        ingestor.notices, ingestor.own_marks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--stores", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(measure(args.alerts, args.stores), indent=1))


if __name__ == "__main__":
    main()
