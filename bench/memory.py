"""Peak memory (RSS) of one worker ingesting a 50,000-alert backlog against a 5,000-alert
one, each in a fresh process; target: less than 2x (pages are streamed, not held).

python -m bench.memory [--small 5000 --large 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from bench.harness import ROOT, environment


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
    run = ingestor.run(FetchRequest(tenant_id))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"new": run.new, "pages": run.pages, "baseline_kib": baseline,
                      "peak_kib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=5_000)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        worker(args.child)
        return
    results = {}
    with environment() as env:
        settings = env.settings(FETCH_PAGE_SIZE="10000")
        client_id = settings.identity.client_id
        from shared.model import Tenant
        from shared.storage import tables
        from shared.storage.tenants import TenantRepository

        repo = TenantRepository(tables.table(env.storage, tables.TENANTS))
        child_env = {**os.environ, "AzureWebJobsStorage": env.storage.connection_string or "",
                     "MSSP_CLIENT_ID": client_id,
                     "MSSP_CLIENT_SECRET": env.info["client_secret"],
                     "MSSP_AUTHORITY_HOST": env.info["base_url"],
                     "MSSP_DEFENDER_API_BASE": env.info["base_url"],
                     "MSSP_CA_BUNDLE": env.info["ca_path"], "FETCH_PAGE_SIZE": "10000",
                     "ONBOARDING_STATE_KEY": "bench-state-key-0123456789-abcdefghijklmnop"}
        for size in (args.small, args.large):
            tenant_id = env.sim.add_tenant(f"Mem {size}", consent=[client_id])["id"]
            for start in range(0, size, 10_000):
                env.sim.generate(tenant_id, min(10_000, size - start), age_seconds=86400)
            repo.add(Tenant(tenant_id, f"Mem {size}"))
            out = subprocess.run([sys.executable, "-m", "bench.memory", "--child", tenant_id],
                                 cwd=ROOT, env=child_env, capture_output=True, text=True,
                                 check=True)
            results[size] = json.loads(out.stdout.strip().splitlines()[-1])
            assert results[size]["new"] == size
    small, large = results[args.small], results[args.large]
    print(json.dumps({"small": small, "large": large,
                      "peak_ratio": round(large["peak_kib"] / small["peak_kib"], 2),
                      "growth_ratio": round((large["peak_kib"] - large["baseline_kib"])
                                            / max(1, small["peak_kib"] - small["baseline_kib"]),
                                            2)}, indent=2))


if __name__ == "__main__":
    main()
