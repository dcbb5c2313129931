"""How much of raw x4's rate (bench/ingest_throughput.py) comes from a spare core: raw x4
alone, and raw x4 while another process spins on one core (as the pipeline's own work,
which raw x4 does not do, keeps one busy), in alternating pairs on the same alerts.

python -m bench.busy_core [--alerts 5000] [--pairs 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import requests

from bench.harness import environment
from bench.ingest_throughput import RoundTables, _raw
from shared.ingest.worker import WRITERS
from shared.microsoft.identity import Tokens


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """One core kept busy by another process (a spin loop) for the block's length."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # spinning before the clock starts
        yield
    finally:
        spinner.kill()
        spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {"idle": [], "busy": []}
    with environment() as env:
        settings = env.settings()
        tenant = env.sim.add_tenant("Bench Co", consent=[settings.identity.client_id])["id"]
        env.sim.generate(tenant, args.alerts, age_seconds=3600)
        token = Tokens(settings.identity).token(tenant)
        alerts = requests.get(f"{settings.identity.api_base()}/api/alerts",
                              params={"$top": 10000, "$expand": "evidence"},
                              headers={"Authorization": f"Bearer {token}"},
                              verify=settings.identity.ca_bundle, timeout=300).json()["value"]
        for number in range(-1, 2 * args.pairs):  # -1 warms Azurite and is not kept
            kind = "busy" if number % 2 else "idle"
            tables = RoundTables(env.storage, number + 1)
            with busy_core() if kind == "busy" else contextlib.nullcontext():
                taken, _ = _raw(tables("RawX4"), alerts, WRITERS)
            tables.drop()
            if number >= 0:
                seconds[kind].append(round(taken, 3))
    idle, busy = (statistics.median(seconds[k]) for k in ("idle", "busy"))
    print(json.dumps({"alerts": args.alerts, "seconds": seconds, "median_idle_s": idle,
                      "median_busy_s": busy, "busy_vs_idle_rate": round(idle / busy, 2)},
                     indent=2))


if __name__ == "__main__":
    main()
