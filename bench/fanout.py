"""Fan-out of 1,000 and 10,000 tenants to the fetch queue on Azurite, against sequential
sends of the same messages measured in the same run.

python -m bench.fanout
"""

from __future__ import annotations

import json
import time
import uuid

from bench.harness import environment
from shared.fanout import Fanout
from shared.messages import FetchRequest
from shared.storage import tables
from shared.storage.tenants import TenantRepository


def main() -> None:
    results = []
    with environment() as env:
        repo = TenantRepository(tables.table(env.storage, tables.TENANTS))
        fetch_queue = tables.queue(env.storage, tables.FETCH_QUEUE)
        scratch = tables.queue(env.storage, "bench-sequential")
        seeded = 0
        for size in (1_000, 10_000):
            repo.merge_many({"RowKey": str(uuid.uuid4()), "display_name": f"T{i}",
                             "status": "active"} for i in range(size - seeded))
            seeded = size
            repo.merge_many({"RowKey": t.tenant_id, "fetch_queued_at": None}
                            for t in repo.all())
            fetch_queue.clear_messages()
            started = time.perf_counter()
            result = Fanout(env.storage).run()
            fanout_s = time.perf_counter() - started
            assert len(result.enqueued) == size, (len(result.enqueued), result.failed)
            sample = min(size, 1_000)
            started = time.perf_counter()
            for _ in range(sample):
                scratch.send_message(FetchRequest(str(uuid.uuid4())).to_message())
            sequential_rate = sample / (time.perf_counter() - started)
            results.append({"tenants": size, "seconds": round(fanout_s, 2),
                            "messages_per_s": round(size / fanout_s),
                            "sequential_sends_per_s": round(sequential_rate),
                            "speedup_vs_sequential": round(size / fanout_s / sequential_rate, 2)})
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
