"""Graph fetch of a backlog (issue 21): Graph calls per tenant for 50,000 alerts (pages of
the max $top, 1,000), the worker's peak memory at 50,000 against 5,000 (target < 2x, as
bench/memory.py: each fetch in a fresh process), and alerts/s against the mde path on as
many alerts in the same run (its backlog from `sim.generate`, $top 10,000). Every fetch is
one run of the real worker (`ingestor_for`, GRAPH_INCIDENTS=false: alerts only) with
FETCH_MAX_PAGES_PER_RUN high enough for the whole backlog. Ratios, not timed asserts.

python -m bench.graph_fetch [--small 5000 --large 50000 --rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from bench.harness import ROOT, Env, environment

PRODUCTS = ["microsoftDefenderForEndpoint", "microsoftDefenderForOffice365",
            "microsoftDefenderForIdentity", "microsoftDefenderForCloudApps"]
BULK = 10_000  # alerts per generate call (the control API takes up to 200,000)


def worker(tenant_id: str) -> None:
    """Child: build the worker as a Functions process would, run one fetch, report."""
    from shared.config import get_settings
    from shared.messages import FetchRequest
    from shared.microsoft.defender import DefenderClient
    from shared.microsoft.identity import Tokens
    from shared.services import ingestor_for

    settings = get_settings()
    ingestor = ingestor_for(settings, Tokens(settings.identity),
                            DefenderClient(300, settings.identity.ca_bundle))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    run = ingestor.run(FetchRequest(tenant_id))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": run.outcome, "new": run.new, "pages": run.pages,
                      "seconds": round(seconds, 2), "baseline_kib": baseline,
                      "peak_kib": peak}))


def _seed(env: Env, source: str, size: int) -> str:
    """A tenant of this source with a backlog of `size` alerts, a day old."""
    from shared.model import Tenant
    from shared.storage import tables
    from shared.storage.tenants import TenantRepository

    name = f"Graph bench {source} {size} {time.monotonic_ns()}"
    tenant_id = env.sim.add_tenant(name, consent=[env.info["client_id"]])["id"]
    for start in range(0, size, BULK):
        count = min(BULK, size - start)
        if source == "graph":
            env.sim.generate_graph(tenant_id, count, PRODUCTS, age_seconds=86400)
        else:
            env.sim.generate(tenant_id, count, age_seconds=86400)
    TenantRepository(tables.table(env.storage, tables.TENANTS)).add(
        Tenant(tenant_id, name, source=source))
    return tenant_id


def _fetch(env: Env, source: str, size: int) -> dict:
    """Seed, then fetch in a fresh worker process; its report and the tenant's API calls."""
    tenant_id = _seed(env, source, size)
    child_env = {**os.environ, **env.environ(
        GRAPH_BASE_URL=env.info["base_url"], GRAPH_INCIDENTS="false",
        FETCH_PAGE_SIZE="10000", FETCH_MAX_PAGES_PER_RUN="1000")}
    before = env.sim.counters()["tenants"][tenant_id]["calls"]
    cpu = env.cpu()
    out = subprocess.run([sys.executable, "-m", "bench.graph_fetch", "--child", tenant_id],
                         cwd=ROOT, env=child_env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{source} fetch of {size} failed:\n{out.stderr[-3000:]}")
    after = env.cpu()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # where the other cores went while the worker fetched (the worker's own is its child's)
    result["cpu_s"] = {k: round(after[k] - cpu[k], 1) for k in ("simulator", "azurite")}
    result["api_calls"] = env.sim.counters()["tenants"][tenant_id]["calls"] - before
    result["alerts_per_s"] = round(size / result["seconds"])
    assert (result["outcome"], result["new"]) == ("success", size), result
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=5_000)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of (graph large, mde large), in turns first")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        worker(args.child)
        return
    rounds = []
    with environment() as env:
        env.sim.limits(graph={"per_minute": 100_000, "per_hour": 1_000_000})
        small = _fetch(env, "graph", args.small)
        for number in range(args.rounds):
            order = ("graph", "mde") if number % 2 == 0 else ("mde", "graph")
            rounds.append({source: _fetch(env, source, args.large) for source in order})
        # printed before the simulator (holding every alert) is stopped, which can be slow
        graph, mde = rounds[0]["graph"], rounds[0]["mde"]
        print(json.dumps({
            "small": args.small, "large": args.large, "graph_small": small, "rounds": rounds,
            "graph_calls_large": graph["api_calls"], "graph_pages_large": graph["pages"],
            "mde_calls_large": mde["api_calls"],
            "graph_peak_ratio": round(graph["peak_kib"] / small["peak_kib"], 2),
            "graph_growth_ratio": round((graph["peak_kib"] - graph["baseline_kib"])
                                        / max(1, small["peak_kib"] - small["baseline_kib"]), 2),
            "graph_vs_mde_peak": round(graph["peak_kib"] / mde["peak_kib"], 2),
            "graph_vs_mde_alerts_per_s": statistics.median(
                round(r["graph"]["alerts_per_s"] / r["mde"]["alerts_per_s"], 2) for r in rounds),
        }, indent=2))


if __name__ == "__main__":
    main()
