"""Storage transactions per 1,000 alerts over the full path, counted at the HTTP layer:
fetch (the worker), relay, notify (one rule, every alert matches, recorded not sent) and
the SIEM feed with one push output (a webhook), each queue worked as the Functions host
works it (batches of 16 received, each message deleted). Also an idle fetch's requests.

    .venv/bin/python -m bench.transactions [--alerts 1000] [--baseline COMMIT]

A transaction is one request storage answered: a Table `$batch` (entity group transaction)
counts as one, as Azure bills it (one transaction per batch, whatever its operations), and
so does each queue request (a get of up to 32 messages is one). `--baseline` runs the same
bench on the tree of COMMIT (exported to a temporary directory, with this file copied in),
in its own process against its own Azurite, and reports both.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from bench.harness import ROOT, environment

HOST_BATCH = 16  # host.json batchSize: messages a queue trigger receives per get
_context = threading.local()


@contextlib.contextmanager
def counting(ports: set[int]) -> Iterator[Counter]:
    """Every request sent to storage (the given ports) while inside, by kind."""
    from shared.storage import batch

    seen: Counter = Counter()
    lock = threading.Lock()
    putrequest = http.client.HTTPConnection.putrequest
    submit = batch.submit_transaction

    def counted_put(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.port in ports:
            with lock:
                seen[_kind(method, url)] += 1
        return putrequest(self, method, url, *args, **kwargs)

    def named_submit(client: Any, operations: Any) -> Any:
        _context.table = client.table_name  # a $batch's URL does not name its table
        try:
            return submit(client, operations)
        finally:
            _context.table = None

    http.client.HTTPConnection.putrequest = counted_put  # type: ignore[method-assign]
    batch.submit_transaction = named_submit
    try:
        yield seen
    finally:
        http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
        batch.submit_transaction = submit


def _kind(method: str, url: str) -> str:
    path = unquote(urlsplit(url).path).split("/devstoreaccount1/", 1)[-1]
    if path == "$batch":
        return f"table {getattr(_context, 'table', None) or '?'} $batch"
    if "/messages" in path:  # queue: put, get (receive), delete
        queue = path.split("/", 1)[0]
        verb = {"POST": "put", "GET": "get", "DELETE": "delete", "PUT": "update"}.get(
            method, method)
        return f"queue {queue} {verb}"
    table = path.split("(", 1)[0]
    if method == "GET":
        keyed = "RowKey=" in path
        return f"table {table} {'read' if keyed else 'query'}"
    return f"table {table} {method.lower()}"


def _ports(connection_string: str) -> set[int]:
    ports = set()
    for part in connection_string.split(";"):
        key, _, value = part.partition("=")
        if key in ("TableEndpoint", "QueueEndpoint"):
            ports.add(urlsplit(value).port or 0)
    return ports


def _events(text: str) -> list[Any]:
    """The alert events of a notify or SIEM message (one, or a batch where there are)."""
    from shared import messages

    if hasattr(messages, "alert_events"):
        return messages.alert_events(text)
    return [messages.AlertEvent.parse(text)]


def _append(feed: Any, events: list[Any]) -> list[bool]:
    """The siem_feed function's work for one message, as this tree does it."""
    if hasattr(feed, "append_all"):
        return feed.append_all(events)
    return [feed.append(e) for e in events]


def _host(queue: Any, handle: Callable[[str], Any]) -> int:
    """Work a queue as the host does until it is empty; returns the messages handled."""
    handled = 0
    while batch := list(queue.receive_messages(messages_per_page=HOST_BATCH,
                                               max_messages=HOST_BATCH,
                                               visibility_timeout=120)):
        for message in batch:
            handle(message.content)
            queue.delete_message(message)
            handled += 1
    return handled


def _webhook_sink() -> tuple[str, Any, list[int]]:
    import logging

    from werkzeug.serving import make_server
    from werkzeug.wrappers import Request, Response

    received: list[int] = []

    def app(environ: dict, start_response: Any) -> Any:
        body = Request(environ).get_data()
        received.append(body.count(b'"event_id"'))
        return Response("{}", 200, content_type="application/json")(environ, start_response)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/hook", server, received


def _fetch_request(tenants: Any, tenant_id: str) -> Any:
    """The fetch message as the fan-out sends it (with the tenant it read, if it does)."""
    from shared.messages import FetchRequest

    try:
        from shared.ingest.fanout import seen  # type: ignore[attr-defined]
    except ImportError:
        return FetchRequest(tenant_id)
    found = tenants.get(tenant_id)
    return FetchRequest(tenant_id, seen=seen(found))


def measure(alerts: int) -> dict[str, Any]:
    from shared.messages import RelayRequest
    from shared.microsoft.defender import DefenderClient
    from shared.microsoft.identity import Tokens
    from shared.model import Tenant
    from shared.notify.rules import parse_rule
    from shared.notify.transport import SmtpTransport
    from shared.services import feed_on, ingestor_for, notifier_for, relay_on, siem_delivery_on
    from shared.siem.outputs import parse_outputs
    from shared.storage import tables

    url, server, received = _webhook_sink()
    smtp_port, smtp = _smtp_sink()
    with environment() as env:
        settle = 1
        settings = env.settings(FETCH_PAGE_SIZE="10000", FETCH_OVERLAP_SECONDS="300")
        storage = env.storage
        ingestor = ingestor_for(settings, Tokens(settings.identity),
                                DefenderClient(120, settings.identity.ca_bundle))
        relay = relay_on(storage)
        notifier = notifier_for(settings, SmtpTransport("127.0.0.1", smtp_port, "none"))
        feed = feed_on(storage, settle, 7)
        tenant_id = env.sim.add_tenant("Transactions Co",
                                       consent=[settings.identity.client_id])["id"]
        ingestor.tenants.add(Tenant(tenant_id, "Transactions Co"))
        notifier.rules.save(parse_rule({"name": "every alert",
                                        "recipients": ["soc@mssp.example"]}, tenant_id))
        time.sleep(1.1)  # a recipient gets the alerts raised after it was added
        env.sim.generate(tenant_id, alerts, age_seconds=0)
        output = f"hook-{uuid.uuid4().hex[:6]}"
        outputs = parse_outputs(json.dumps([{"name": output, "type": "webhook", "url": url,
                                             "batch_size": 500, "tenants": [tenant_id]}]),
                                {"SIEM_WEBHOOK_SECRET": "s" * 20})
        delivery = siem_delivery_on(storage, feed, outputs)
        delivery.deliver(output)  # its state row exists before the run (set-up)
        queues = {name: tables.queue(storage, name) for name in (
            tables.RELAY_QUEUE, tables.NOTIFY_QUEUE, tables.SIEM_QUEUE)}
        ports = _ports(storage.connection_string or "")
        request = _fetch_request(ingestor.tenants, tenant_id)
        results: dict[str, Any] = {"alerts": alerts}
        started = time.perf_counter()
        with counting(ports) as seen:
            run = ingestor.run(request)
            assert run.new == alerts, run
            _host(queues[tables.RELAY_QUEUE],
                  lambda text: relay.relay(RelayRequest.parse(text).tenant_id))
            emails: list[int] = []  # per event: emails sent
            appended: list[bool] = []  # per event: added to the feed
            messages = _host(queues[tables.NOTIFY_QUEUE], lambda text: emails.extend(
                notifier.handle(e).sent for e in _events(text)))
            _host(queues[tables.SIEM_QUEUE],
                  lambda text: appended.extend(_append(feed, _events(text))))
            notified, fed = len(emails), sum(appended)
            time.sleep(settle + 0.5)
            delivered = 0
            while delivered < alerts:
                outcome = delivery.deliver(output)
                if not outcome.delivered:
                    break
                delivered += outcome.delivered
        results["seconds"] = round(time.perf_counter() - started, 1)
        assert notified == fed == alerts == delivered == sum(received) == sum(emails), (
            notified, fed, delivered, received, sum(emails))
        results["events_per_message"] = round(alerts / messages, 1)
        results["per_1000_alerts"] = round(sum(seen.values()) * 1000 / alerts)
        results["by_stage"] = _stages(seen, alerts)
        results["by_kind"] = dict(sorted(seen.items(), key=lambda kv: -kv[1]))
        # an idle fetch of the same tenant, as the fan-out would send it
        request = _fetch_request(ingestor.tenants, tenant_id)
        with counting(ports) as idle:
            assert ingestor.run(request).new == 0
        results["idle_fetch"] = sum(idle.values())
        results["idle_fetch_kinds"] = dict(idle)
    server.shutdown()
    smtp.stop()
    return results


def _smtp_sink() -> tuple[int, Any]:
    """A local SMTP server that accepts every email."""
    import socket

    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Accept(), hostname="127.0.0.1", port=port)
    controller.start()
    return port, controller


_STAGES = {"fetch": ("IngestState", "Tenants", "RunHistory", "fetch-requests"),
           "relay": ("alert-relay",),
           "notify": ("notify-events", "NotifyRules", "NotifyLedger", "MailOutbox",
                      "NotifyDigest", "AppHealth"),
           "siem": ("siem-events", "SiemFeed", "SiemDelivery", "siem-deliveries")}


def _stages(seen: Counter, alerts: int) -> dict[str, float]:
    """Per 1,000 alerts, by the stage that owns the table or queue (the queue an event is
    put on counts for its sender: the relay puts on notify-events and siem-events)."""
    out: Counter = Counter()
    for kind, count in seen.items():
        _, name, verb = kind.split(" ", 2)
        if name in ("notify-events", "siem-events") and verb == "put":
            stage = "relay"
        elif name == "Alerts":  # the worker writes alerts in $batch; the feed reads them
            stage = "fetch" if verb == "$batch" else "siem"
        else:
            stage = next((s for s, names in _STAGES.items() if name in names), "other")
        out[stage] += count
    return {k: round(v * 1000 / alerts) for k, v in sorted(out.items())}


def _baseline(commit: str, alerts: int) -> dict[str, Any]:
    """This bench on the tree of `commit`, in its own process."""
    git = shutil.which("git") or "git"
    where = Path(tempfile.mkdtemp(prefix="bench-transactions-"))
    archive = subprocess.run([git, "archive", commit], cwd=ROOT, check=True,
                             capture_output=True).stdout
    tar = shutil.which("tar") or "tar"
    subprocess.run([tar, "-x", "-C", str(where)], input=archive, check=True)
    shutil.copy(Path(__file__), where / "bench" / "transactions.py")
    for link in ("node_modules", ".venv"):
        (where / link).symlink_to(ROOT / link)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.transactions", "--alerts",
                              str(alerts)], cwd=where, check=True, capture_output=True,
                             text=True).stdout
    finally:
        shutil.rmtree(where, ignore_errors=True)
    return json.loads(out)["runs"][0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--baseline", help="a commit to measure the same way, first")
    args = parser.parse_args()
    runs = []
    if args.baseline:
        runs.append({**_baseline(args.baseline, args.alerts), "tree": args.baseline})
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    runs.append({"tree": "this", **measure(args.alerts)})
    if args.baseline:
        runs[-1]["vs_baseline"] = round(runs[-1]["per_1000_alerts"]
                                        / runs[0]["per_1000_alerts"], 2)
    print(json.dumps({"runs": runs}, indent=1))


if __name__ == "__main__":
    main()
