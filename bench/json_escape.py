"""What the lean $batch writer's ASCII escaping (batch.ascii_json, as the SDK sends JSON)
costs per alert row: the entity JSON of 100 simulator alerts with and without it, for
ASCII alerts and for alerts with U+2028 and accents in their title and device name.

python -m bench.json_escape
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from devtools.simulator.alerts import AlertFactory
from shared import codec
from shared.storage import batch
from shared.storage.alert_rows import alert_rows


def _rows(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for alert in alerts
            for row in alert_rows("p", alert, data=codec.dumps(alert))]


def _best(fn: Callable[[], object], rounds: int = 7, repeat: int = 50) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def main() -> None:
    factory = AlertFactory(str(uuid.uuid4()), "contoso.example", seed=1)
    made = [factory.make(638_000_000_000_000_000 + i * 10_000_000) for i in range(100)]
    plain = [{k: v for k, v in a.items() if not k.startswith("_")} for a in made]
    odd = [{**a, "title": a["title"] + " \u2028 ü", "computerDnsName": "pé-" + a["id"]}
           for a in plain]
    for name, alerts in (("ascii", plain), ("non-ascii", odd)):
        rows = _rows(alerts)
        before = _best(lambda rows=rows: [codec.dumps(batch._properties(r)) for r in rows])
        after = _best(lambda rows=rows: [batch.ascii_json(codec.dumps(batch._properties(r)))
                                         for r in rows])
        print(f"{name:10s} entity JSON {before / len(rows) * 1e6:6.2f} us/row, escaped "
              f"{after / len(rows) * 1e6:6.2f} us/row (+{(after - before) / len(rows) * 1e6:.2f})")


if __name__ == "__main__":
    main()
