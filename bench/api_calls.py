"""Defender API calls per tenant: an idle tick (target 1) and a 50,000-alert backlog with
$top 10,000 (target at most 6), counted by the simulator.

python -m bench.api_calls [--backlog 50000]
"""

from __future__ import annotations

import argparse
import json

from bench.harness import environment
from shared.messages import FetchRequest
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens
from shared.model import Tenant
from shared.services import ingestor_for


def calls(env, tenant_id: str) -> int:
    return env.sim.counters()["tenants"][tenant_id]["calls"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=50_000)
    args = parser.parse_args()
    with environment() as env:
        settings = env.settings(FETCH_PAGE_SIZE="10000")
        ingestor = ingestor_for(settings, Tokens(settings.identity),
                                DefenderClient(300, settings.identity.ca_bundle))
        client_id = settings.identity.client_id

        idle = env.sim.add_tenant("Idle Co", consent=[client_id])["id"]
        env.sim.generate(idle, 200, age_seconds=120)
        ingestor.tenants.add(Tenant(idle, "Idle Co"))
        ingestor.run(FetchRequest(idle))
        before = calls(env, idle)
        run = ingestor.run(FetchRequest(idle))
        idle_calls = calls(env, idle) - before
        assert run.new == 0

        backlog = env.sim.add_tenant("Backlog Co", consent=[client_id])["id"]
        for _ in range(args.backlog // 10_000):
            env.sim.generate(backlog, 10_000, age_seconds=3 * 86400)
        ingestor.tenants.add(Tenant(backlog, "Backlog Co"))
        before = calls(env, backlog)
        run = ingestor.run(FetchRequest(backlog))
        backlog_calls = calls(env, backlog) - before
        assert run.new == args.backlog, run
    print(json.dumps({"idle_tick_calls": idle_calls, "backlog": args.backlog,
                      "backlog_calls": backlog_calls, "backlog_pages": run.pages}, indent=2))


if __name__ == "__main__":
    main()
