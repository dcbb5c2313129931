"""A burst of 1,000 alerts through the real pipeline, with two relay workers polling the
relay queue at once (as the host runs the `relay` function on two instances): how many
events reach the notify and SIEM queues (target: exactly 1,000 each), and what the relay
costs in storage transactions per 1,000 events.

    .venv/bin/python -m bench.relay_burst [--alerts 1000] [--rounds 3] [--old] [--index]

`--old` also runs each round with the relay as it was before the relay lease (loaded from
git at OLD_COMMIT), on its own tenant, in the same Azurite. `--index` runs each round
twice, the relay without and with the portal's AlertIndex to keep (its writes counted
apart, as `index_ops`: one per `$batch` or single delete), alternating which goes first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time
import types
from collections import Counter
from typing import Any

from bench.harness import ROOT, environment
from shared.ingest.index_feed import IndexFeed
from shared.ingest.relay import Relay
from shared.messages import FetchRequest, RelayRequest, alert_events
from shared.microsoft.defender import DefenderClient
from shared.microsoft.identity import Tokens
from shared.model import Tenant
from shared.services import ingestor_for
from shared.storage import tables
from shared.storage.alert_index import AlertIndex
from shared.storage.alerts import AlertRepository
from shared.storage.connection import StorageConnection
from shared.storage.ingest_state import IngestStates
from shared.storage.queues import EventQueue, RelayQueue

OLD_COMMIT = "de0a0aa"  # main before the relay lease
TABLE_OPS = ("get_entity", "create_entity", "update_entity", "upsert_entity",
             "delete_entity", "query_entities", "submit_transaction")


class Counted:
    """A storage client whose calls are counted (one call, one transaction; the outbox
    listing is one page here)."""

    def __init__(self, client: Any, counter: Counter, ops: tuple[str, ...]) -> None:
        self._client, self._counter, self._ops = client, counter, ops
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name not in self._ops:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self._counter[name] += 1
            return attr(*args, **kwargs)
        return counted


class CountedIndex(AlertIndex):
    """The AlertIndex, each storage request of its writes counted."""

    def __init__(self, client: Any, counter: Counter) -> None:
        super().__init__(client)
        self.counter = counter

    def _submit(self, operations: list[Any]) -> None:
        self.counter["index_batch"] += 1
        super()._submit(operations)

    def _delete(self, day: str, row_key: str) -> None:
        self.counter["index_delete"] += 1
        super()._delete(day, row_key)


def _old_relay_class() -> type:
    git = shutil.which("git") or "git"
    source = subprocess.run([git, "show", f"{OLD_COMMIT}:shared/ingest/relay.py"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("old_relay")
    exec(compile(source, "old_relay.py", "exec"), module.__dict__)  # noqa: S102 (our own git)
    return module.Relay


def _drain(storage: StorageConnection, name: str, tenant_id: str) -> Counter:
    client, ids = tables.queue(storage, name), Counter()
    while batch := list(client.receive_messages(messages_per_page=32, max_messages=32,
                                                visibility_timeout=60)):
        for message in batch:
            for event in alert_events(message.content):  # an event or a batch
                if event.tenant_id == tenant_id:
                    ids[event.event_id] += 1
            client.delete_message(message)
    return ids


def _round(env: Any, ingestor: Any, storage: StorageConnection, n: int, old: bool,
           indexed: bool = False) -> dict[str, Any]:
    client_id = env.settings().identity.client_id
    tenant_id = env.sim.add_tenant("Burst Co", consent=[client_id])["id"]
    env.sim.generate(tenant_id, n, age_seconds=600)
    ingestor.tenants.add(Tenant(tenant_id, "Burst Co"))
    table_ops: Counter = Counter()
    queue_ops: Counter = Counter()
    states = IngestStates(Counted(tables.table(storage, tables.INGEST_STATE), table_ops,
                                  TABLE_OPS))
    notify = EventQueue(tables.queue(storage, tables.NOTIFY_QUEUE))
    siem = EventQueue(tables.queue(storage, tables.SIEM_QUEUE))
    requests = Counted(tables.queue(storage, tables.RELAY_QUEUE), queue_ops,
                       ("send_message", "receive_message", "delete_message"))
    if old:
        relay_class = _old_relay_class()
        workers = [relay_class(states, notify, siem) for _ in range(2)]
    else:
        index_ops: Counter = Counter()
        feed = IndexFeed(CountedIndex(tables.table(storage, tables.ALERT_INDEX), index_ops),
                         AlertRepository(tables.table(storage, tables.ALERTS)))
        workers = [Relay(states, notify, siem, RelayQueue(requests),
                         index=feed if indexed else None) for _ in range(2)]
    done = threading.Event()
    relayed: list[int] = []

    def poll(relay: Any) -> None:
        """The host's queue trigger, one message at a time."""
        while True:
            message = requests.receive_message(visibility_timeout=120)
            if message is None:
                if done.is_set():
                    return
                time.sleep(0.05)
                continue
            relayed.append(relay.relay(RelayRequest.parse(message.content).tenant_id))
            requests.delete_message(message)

    threads = [threading.Thread(target=poll, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    started = time.perf_counter()
    run = ingestor.run(FetchRequest(tenant_id))
    assert run.new == n, run
    done.set()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    counts = {name: _drain(storage, name, tenant_id)
              for name in (tables.NOTIFY_QUEUE, tables.SIEM_QUEUE)}
    table_total = sum(table_ops.values())
    return {
        "relay": "old" if old else "lease+index" if indexed else "lease",
        "seconds": round(seconds, 2),
        "relay_runs": len(relayed),
        **{f"{name}_events": sum(c.values()) for name, c in counts.items()},
        **{f"{name}_distinct": len(c) for name, c in counts.items()},
        "relay_table_ops_per_1000_events": round(table_total * 1000 / n, 1),
        "relay_table_ops": dict(table_ops),
        "relay_queue_ops": dict(queue_ops),
        "delayed_relay_requests_left": queue_ops["send_message"],
        **({"index_ops": dict(index_ops)} if indexed else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--old", action="store_true",
                        help=f"also run each round on the relay of {OLD_COMMIT}")
    parser.add_argument("--index", action="store_true",
                        help="run each round without and with the AlertIndex kept")
    args = parser.parse_args()
    with environment() as env:
        settings = env.settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="0")
        ingestor = ingestor_for(settings, Tokens(settings.identity),
                                DefenderClient(120, settings.identity.ca_bundle))
        results = []
        for number in range(args.rounds):
            if args.index:
                for indexed in [number % 2 == 0, number % 2 == 1]:
                    result = _round(env, ingestor, env.storage, args.alerts, False, indexed)
                    results.append(result)
                    print(json.dumps(result), flush=True)
                continue
            for old in ([number % 2 == 0, number % 2 == 1] if args.old else [False]):
                result = _round(env, ingestor, env.storage, args.alerts, old)
                results.append(result)
                print(json.dumps(result), flush=True)
    print(json.dumps({"rounds": results}, indent=1))


if __name__ == "__main__":
    main()
