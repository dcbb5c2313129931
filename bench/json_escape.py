"""What escaping the lean $batch JSON as the SDK does (every non-ASCII character as
\\uXXXX) costs per alert row: the entity JSON of 100 simulator alerts, ASCII, and the same
with U+2028 and accents in their title, device name and device group. Before the escaping
both cost the same; the difference is its price.

python -m bench.json_escape
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from devtools.simulator.alerts import AlertFactory
from shared import codec
from shared.storage import batch
from shared.storage.alert_rows import alert_rows


def _rows(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for alert in alerts
            for row in alert_rows("p", alert, data=codec.dumps(alert))]


def main(rounds: int = 15, repeat: int = 20) -> None:
    factory = AlertFactory(str(uuid.uuid4()), "contoso.example", seed=1)
    made = [factory.make(638_000_000_000_000_000 + i * 10_000_000) for i in range(100)]
    plain = [{k: v for k, v in a.items() if not k.startswith("_")} for a in made]
    odd = [{**a, "title": a["title"] + " \u2028 ü", "computerDnsName": "pé-" + a["id"],
            "rbacGroupName": "Geräte München"} for a in plain]
    sets = {"ascii": _rows(plain), "non-ascii": _rows(odd)}
    best = dict.fromkeys(sets, float("inf"))
    for _ in range(rounds):  # interleaved, the best of each: a shared machine is noisy
        for name, rows in sets.items():
            start = time.perf_counter()
            for _ in range(repeat):
                for row in rows:
                    batch.ascii_json(codec.dumps(batch._properties(row)))
            best[name] = min(best[name], (time.perf_counter() - start) / repeat / len(rows))
    for name, seconds in best.items():
        print(f"{name:10s} entity JSON {seconds * 1e6:6.2f} us/row")
    print(f"escaping costs {(best['non-ascii'] - best['ascii']) * 1e6:.2f} us a non-ASCII row")


if __name__ == "__main__":
    main()
