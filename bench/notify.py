"""Notifications: events matched and emailed per second against 100 rules, with the same
run's raw SMTP send rate as the baseline; and emails for a 1,000-alert burst with
digests on (target: one per rule per window) and off.

python -m bench.notify
"""

from __future__ import annotations

import json
import socket
import time
import uuid

from aiosmtpd.controller import Controller

from bench.harness import environment
from devtools.simulator.alerts import AlertFactory
from shared import timefmt
from shared.config import Settings
from shared.ingest.events import build_event, tracked
from shared.messages import AlertEvent
from shared.notify.rules import parse_rule
from shared.notify.transport import SmtpTransport
from shared.services import notifier_for
from tests.helpers import app_env


class Counter:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 OK"


def events(tenant: str, n: int) -> list[AlertEvent]:
    factory = AlertFactory(tenant, "bench.example")
    out = []
    for i in range(n):
        alert = factory.make(int(time.time() * 1e7) + i)
        version = timefmt.normalize(alert["lastUpdateTime"])
        out.append(build_event(tenant, "Bench Co", alert, version, None,
                               tracked(alert, version)))
    return out


def main() -> None:
    counter = Counter()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with environment() as env:
            settings = Settings.from_env(app_env(
                AzureWebJobsStorage=env.storage.connection_string or ""))
            transport = SmtpTransport("127.0.0.1", port, "none")
            notifier = notifier_for(settings, transport)
            tenant = str(uuid.uuid4())
            groups = ["Finance Workstations", "Servers - Tier 0", "Developers", "Kiosks",
                      "UnassignedGroup"]
            severities = ["Informational", "Low", "Medium", "High"]
            for i in range(100):  # each event matches about 5 of them
                notifier.rules.save(parse_rule({
                    "name": f"rule {i}", "recipients": [f"r{i}@mssp.example"],
                    "severities": [severities[i % 4]], "device_groups": [groups[i % 5]]},
                    tenant))
            batch = events(tenant, 200)
            started = time.perf_counter()
            sent = sum(notifier.handle(e).sent for e in batch)
            handled_s = time.perf_counter() - started

            messages = [notifier.message(e, notifier.rules.list(tenant)[0],
                                         ["x@mssp.example"]) for e in batch[:sent]]
            started = time.perf_counter()
            for m in messages:
                transport.send(m)
            raw_rate = len(messages) / (time.perf_counter() - started)

            burst_tenant, each_tenant = str(uuid.uuid4()), str(uuid.uuid4())
            notifier.rules.save(parse_rule({"name": "digest", "recipients": ["d@mssp.example"],
                                            "delivery": "digest"}, burst_tenant))
            notifier.rules.save(parse_rule({"name": "each", "recipients": ["e@mssp.example"]},
                                           each_tenant))
            before = counter.count
            for e in events(burst_tenant, 1000):
                notifier.handle(e)
            notifier.send_digests()
            digest_emails = counter.count - before
            before = counter.count
            for e in events(each_tenant, 1000):
                notifier.handle(e)
            each_emails = counter.count - before
    finally:
        controller.stop()
    print(json.dumps({
        "rules": 100, "events": len(batch), "emails": sent,
        "events_per_s": round(len(batch) / handled_s, 1),
        "emails_per_s": round(sent / handled_s, 1),
        "raw_smtp_sends_per_s": round(raw_rate, 1),
        "emails_vs_raw_smtp": round(sent / handled_s / raw_rate, 2),
        "burst_1000_digest_on_emails": digest_emails,
        "burst_1000_digest_off_emails": each_emails}, indent=2))


if __name__ == "__main__":
    main()
