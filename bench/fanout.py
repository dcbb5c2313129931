"""Fan-out of 1,000 and 10,000 tenants to the fetch queue on Azurite, against baselines
measured in the same run on the same Azurite:
  sdk sequential: QueueClient.send_message, one after the other (the SDK's own rate);
  raw puts:       the same number of messages through the fan-out's own sender and threads,
                  with nothing else (no registry read, no ledger): Azurite's ceiling as
                  Python can drive it (measured just before the fan-out);
  node puts:      the same POSTs from a Node.js client (keep-alive, as many in flight as
                  the fan-out has senders), just after: Azurite's ceiling without Python.
Each round has a fresh Azurite, warmed up by 1,000 puts; the fan-out starts with every
tenant due.

python -m bench.fanout [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from azure.storage.queue import QueueSasPermissions, generate_queue_sas

from bench.harness import ROOT, environment
from shared.ingest.fanout import SENDERS
from shared.messages import FetchRequest
from shared.services import fanout_on
from shared.storage import tables
from shared.storage.queue_sender import QueueSender, encode
from shared.storage.tenants import TenantRepository

NODE_PUTS = r"""
const http = require('http');
const [url, count, inflight, body] = process.argv.slice(1);
const agent = new http.Agent({keepAlive: true, maxSockets: Number(inflight)});
let started = 0, done = 0;
const t0 = process.hrtime.bigint();
function next() {
  if (started >= Number(count)) return;
  started++;
  const req = http.request(url, {method: 'POST', agent,
    headers: {'x-ms-version': '2021-02-12', 'Content-Type': 'application/xml'}}, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 201) { console.error(res.statusCode); process.exit(1); }
        if (++done === Number(count)) {
          console.log(Number(count) / (Number(process.hrtime.bigint() - t0) / 1e9));
          agent.destroy();
        } else next();
      });
    });
  req.end(body);
}
for (let i = 0; i < Number(inflight); i++) next();
"""


def node_rate(queue_client, count: int) -> float:
    sas = generate_queue_sas(queue_client.account_name, queue_client.queue_name,
                             queue_client.credential.account_key,
                             permission=QueueSasPermissions(add=True),
                             expiry=datetime.now(UTC) + timedelta(hours=1))
    body = encode(FetchRequest(str(uuid.uuid4())).to_message()).decode()
    node = shutil.which("node") or "node"
    out = subprocess.run([node, "-e", NODE_PUTS, f"{queue_client.url}/messages?{sas}",
                          str(count), str(SENDERS), body], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=600)
    return float(out.stdout.strip())


def _round(env, size: int) -> dict[str, float]:
    node_rate(tables.queue(env.storage, "bench-warm-up"), 1_000)  # Azurite's JIT, not us
    repo = TenantRepository(tables.table(env.storage, tables.TENANTS))
    repo.merge_many({"RowKey": str(uuid.uuid4()), "display_name": f"T{i}",
                     "status": "active"} for i in range(size))
    scratch = tables.queue(env.storage, "bench-baseline")
    sender = QueueSender(env.storage, "bench-baseline")
    ids = [str(uuid.uuid4()) for _ in range(size)]
    started = time.perf_counter()
    with ThreadPoolExecutor(SENDERS) as pool:
        list(pool.map(lambda t: sender.send_message(FetchRequest(t).to_message()), ids))
    raw_rate = size / (time.perf_counter() - started)

    fanout = fanout_on(env.storage)  # built once per process in the app (shared/services.py)
    started = time.perf_counter()
    result = fanout.run()
    fanout_s = time.perf_counter() - started
    assert len(result.enqueued) == size, (len(result.enqueued), result.failed)
    node = node_rate(tables.queue(env.storage, "bench-node"), size)
    sample = min(size, 500)
    started = time.perf_counter()
    for tenant_id in ids[:sample]:
        scratch.send_message(FetchRequest(tenant_id).to_message())
    sdk_rate = sample / (time.perf_counter() - started)
    rate = size / fanout_s
    return {"tenants": size, "seconds": round(fanout_s, 2), "messages_per_s": round(rate),
            "raw_puts_per_s": round(raw_rate), "node_puts_per_s": round(node),
            "sdk_sequential_per_s": round(sdk_rate), "vs_raw_puts": round(rate / raw_rate, 2),
            "vs_node_puts": round(rate / node, 2),
            "vs_sdk_sequential": round(rate / sdk_rate, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = []
    for size in [1_000] * args.rounds + [10_000] * args.rounds:
        # a fresh Azurite per round: rounds start alike, and Azurite's in-memory queues
        # were seen to stall after some 40,000 messages put and cleared in one process
        with environment() as env:
            results.append(_round(env, size))
    summary = {}
    for size in sorted({r["tenants"] for r in results}):
        rows = [r for r in results if r["tenants"] == size]
        summary[size] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(json.dumps({"runs": results, "median": summary}, indent=2))


if __name__ == "__main__":
    main()
