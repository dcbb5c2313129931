"""`make run`: Azurite, the simulator with demo tenants, and the app on the local host.

Everything a newcomer needs to see alerts arrive: the simulator plays Entra ID and the
Defender API of a few customer tenants (alerts keep coming), the registry is seeded with
them, and the fan-out timer runs every 20 seconds. Ctrl-C stops it all, within seconds:
no more messages taken, running work given a few seconds, then handed back to its queue,
storage stopped last. One run per `.local/` (a lock, see runlock.py); nothing it starts
outlives it (lifeline.py). Bad settings stop the start, named (never their values).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from devhost.azurite import Azurite, AzuriteError
from devhost.config import ensure_local_settings, load_local_settings
from devhost.host import Host, HostError
from devhost.lifeline import ParentWatch
from devtools.ports import check_free
from devtools.runlock import RunLock, RunLocked
from devtools.simulator.server import Simulator, SimulatorConfig
from devtools.smtp_catcher import SmtpCatcher
from devtools.syslog_receiver import SyslogReceiver
from devtools.webhook_receiver import WebhookReceiver
from shared.config import Settings
from shared.model import Tenant
from shared.notify.rules import GLOBAL, parse_rule
from shared.storage import tables
from shared.storage.connection import StorageConnection
from shared.storage.rules import RuleRepository
from shared.storage.tenants import TenantRepository

PROJECT_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("run")


def seed_registry(storage: StorageConnection, simulator: Simulator) -> list[str]:
    """Register the simulator's demo customer tenants (idempotent across restarts)."""
    repo = TenantRepository(tables.table(storage, tables.TENANTS))
    added = []
    for tenant in simulator.world.tenants.values():
        if tenant.id == simulator.config.mssp_tenant_id or not tenant.consents:
            continue
        if repo.get(tenant.id) is None:
            triage = simulator.config.triage_client_id in tenant.consents
            repo.add(Tenant(tenant.id, tenant.name, access="triage" if triage else "read",
                            consent_app="triage" if triage else "read",
                            access_reason="" if triage else "a read-only demo tenant"))
            added.append(tenant.name)
    return added


DEMO_RULE = "Demo: High and Medium alerts to the SOC"
# with --webhook-receiver: the demo rule posts to its Teams and Slack hooks, naming the
# app settings WebhookReceiver.settings() exports (never a URL)
DEMO_CHANNELS = [{"type": "teams", "name": "soc-teams", "webhook_setting": "TEAMS_WEBHOOK_SOC"},
                 {"type": "slack", "name": "soc-slack", "webhook_setting": "SLACK_WEBHOOK_SOC"}]


def seed_rule(rules: RuleRepository, channels: bool = False) -> bool:
    """An MSSP-wide demo rule, so emails land in MailOutbox (the portal's Outbox) within a
    minute: recipients only get alerts raised after they were added. `channels`: the
    webhook receiver runs, so the rule also posts to it; without it (a later run on the
    same storage) the demo channels are taken off again, as nothing would take their
    posts. Channels and rules the MSSP added itself are left alone. True if it wrote."""
    wanted = DEMO_CHANNELS if channels else []
    found = rules.list(GLOBAL)
    if not found:
        rules.save(parse_rule({"name": DEMO_RULE, "recipients": ["soc@mssp.example"],
                               "severities": ["High", "Medium"], "channels": wanted}, GLOBAL))
        return True
    demo = next((r for r in found if r.name == DEMO_RULE), None)
    if demo is None:
        return False
    demo_settings = {c["webhook_setting"] for c in DEMO_CHANNELS}
    kept = [c for c in demo.channels if c["webhook_setting"] not in demo_settings
            or c in wanted]
    names = {c["name"].lower() for c in kept}
    after = kept + [c for c in wanted if c["name"].lower() not in names]
    if after == demo.channels or not (after or demo.recipients):
        return False
    rules.save(dataclasses.replace(demo, channels=after))
    return True


GRACE_SECONDS = 3.0  # running invocations get this long at a stop; then messages go back


def _quiet_console(verbose: bool) -> None:
    """What a person reads: errors and warnings, a line per fetch run, this runner's own
    lines. Every invocation's line (and the SDKs') only with --verbose."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    for name in ("run", "mssp_hub.ingest"):
        logging.getLogger(name).setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run", description=__doc__)
    parser.add_argument("--script-root", type=Path, default=PROJECT_ROOT)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--azurite-data", default=".local/azurite",
                        help="Azurite's data folder under the script root ('-' = in memory)")
    parser.add_argument("--rate", type=float, default=0.5,
                        help="simulated alerts (new or changed) per second")
    parser.add_argument("--syslog", action="store_true",
                        help="also run a local syslog receiver and push CEF lines to it")
    parser.add_argument("--smtp-catcher", action="store_true",
                        help="send emails over SMTP to a local catcher that keeps each as "
                             ".local/mail/*.eml (instead of keeping them in the outbox only)")
    parser.add_argument("--webhook-receiver", action="store_true",
                        help="take Teams and Slack webhook posts locally, checked against "
                             "each platform's schema (TEAMS_WEBHOOK_SOC, SLACK_WEBHOOK_SOC)")
    parser.add_argument("--verbose", action="store_true",
                        help="log every invocation, not only errors and fetch runs")
    args = parser.parse_args(argv)
    _quiet_console(args.verbose)
    root = args.script_root.resolve()
    local = root / ".local"
    try:  # before anything is started or written: a second run must not harm the first
        lock = RunLock(local).acquire()
    except RunLocked as exc:
        log.error("%s", exc)
        return 3
    stop = threading.Event()
    azurite = simulator = host = syslog = catcher = webhooks = None

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second Ctrl-C: no more waiting
            log.warning("Stopping at once")
            if azurite and azurite.process:
                azurite.process.kill()
            os._exit(130)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    watch = ParentWatch(stop.set).start()  # make killed, or asked to stop: we stop too
    try:
        check_free(args.port, "the app's HTTP port")
        ensure_local_settings(root)
        load_local_settings(root)
        os.environ.setdefault("FETCH_SCHEDULE", "*/20 * * * * *")
        # a local.settings.json from before the poison drain timer
        os.environ.setdefault("POISON_DRAIN_SCHEDULE", "0 */5 * * * *")
        if not os.environ.get("PORTAL_KEY"):  # a local.settings.json from before the portal
            os.environ["PORTAL_KEY"] = secrets.token_urlsafe(24)
        if args.smtp_catcher:
            catcher = SmtpCatcher(local / "mail").start()
            os.environ.update(catcher.settings())
        if args.webhook_receiver:
            webhooks = WebhookReceiver(local / "webhooks.jsonl").start()
            os.environ.update(webhooks.settings())  # a rule's channels can name these
        if args.syslog:
            syslog = SyslogReceiver(local / "syslog.log").start()
            os.environ.update({
                "SIEM_OUTPUTS": json.dumps([{"name": "local-syslog", "type": "syslog",
                                             "host": "127.0.0.1", "port": syslog.port,
                                             "protocol": "tcp"}]),
                "SIEM_SETTLE_SECONDS": "5", "SIEM_PUSH_SCHEDULE": "*/5 * * * * *"})
        azurite = Azurite(PROJECT_ROOT, log_path=local / "azurite.log",
                          location=None if args.azurite_data == "-" else root / args.azurite_data
                          ).start()
        if azurite.process:
            lock.add_child("Azurite", azurite.process.pid)
        simulator = Simulator(SimulatorConfig(
            ca_path=local / "simulator" / "ca.pem",
            certificate_path=local / "simulator" / "app-certificate.pem",
            # the world survives a restart with the storage that remembers it
            state_path=None if args.azurite_data == "-" else local / "simulator" / "world.json",
            browser_port=0,  # consent pages on plain HTTP: no certificate warning
            redirect_uris=[f"http://127.0.0.1:{args.port}/api/consent/callback",
                           f"http://localhost:{args.port}/api/consent/callback"])).start()
        simulator.seed_demo()
        if args.rate > 0:
            simulator.start_demo(args.rate)
        os.environ.update({
            "AzureWebJobsStorage": azurite.connection_string,
            "MSSP_CLIENT_ID": simulator.config.client_id,
            "MSSP_CLIENT_SECRET": simulator.config.client_secret,
            # the triage app (Alert.ReadWrite.All): invitations may ask for triage access
            "MSSP_TRIAGE_CLIENT_ID": simulator.config.triage_client_id,
            "MSSP_TRIAGE_CLIENT_SECRET": simulator.config.triage_client_secret,
            "MSSP_AUTHORITY_HOST": simulator.base_url,
            "MSSP_DEFENDER_API_BASE": simulator.base_url,
            "GRAPH_BASE_URL": simulator.base_url,  # sendMail and the security API (issue 21)
            "MSSP_CA_BUNDLE": str(simulator.config.ca_path),
            "MSSP_SIGN_IN_HOST": simulator.browser_base_url,  # a browser's way in, plain HTTP
            "MSSP_TENANT_ID": simulator.config.mssp_tenant_id,  # never onboarded as a customer
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{args.port}",  # the registered redirect
        })
        Settings.from_env(os.environ)  # every setting checked before "running" is said
        storage = StorageConnection.from_env(os.environ, "AzureWebJobsStorage")
        seeded = seed_registry(storage, simulator)
        seed_rule(RuleRepository(tables.table(storage, tables.NOTIFY_RULES)),
                  channels=webhooks is not None)
        host = Host(root, "function_app:app", http_port=args.port)
        host.start()
    except (AzuriteError, HostError, ValueError, OSError) as exc:
        # SettingsError and SettingsFileError are ValueErrors naming a setting or a file
        log.error("%s", exc)
        log.error("mssp-hub did not start")
        for part in (host, simulator, azurite, syslog, catcher, webhooks):
            if part:
                part.stop()
        lock.release()
        return 2
    base = host.http.base_url if host.http else ""
    state = {"http": base, "simulator": simulator.base_url, "azurite": azurite.ports,
             "azurite_pid": azurite.process.pid if azurite.process else None,
             "pid": os.getpid(), "tenants_seeded": seeded, "portal": f"{base}/api/portal"}
    hooks = "make run ARGS=--webhook-receiver takes Teams and Slack posts locally"
    if webhooks:
        state["webhooks"] = webhooks.base_url
        hooks = f"Teams and Slack posts checked and kept, shown on {webhooks.base_url}/" + \
            "".join(f"\n              {name}={url}" for name, url in webhooks.settings().items()) \
            + "\n              (the demo rule posts there: channels " + \
            ", ".join(c["name"] for c in DEMO_CHANNELS) + ")"
    partial = local / "run.json.tmp"
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(local / "run.json")  # appears whole: readers poll for it
    print(f"""
mssp-hub is running
  portal      {base}/api/portal/login?key={os.environ["PORTAL_KEY"]}
              (signs this browser in once; the key is PORTAL_KEY, local use only)
  health      {base}/api/health
  simulator   {simulator.base_url}  (Entra ID, Defender and Graph APIs, demo tenants; the
              consent pages a browser opens on {simulator.browser_base_url})
  storage     Azurite on queue {azurite.ports['Queue']}, table {azurite.ports['Table']}
  fan-out     {"every 20 s" if os.environ["FETCH_SCHEDULE"] == "*/20 * * * * *"
               else os.environ["FETCH_SCHEDULE"]} (FETCH_SCHEDULE); alerts land in the Alerts table
  tenants     {base}/api/tenants  (header x-functions-key: DEVHOST_FUNCTION_KEY in
              local.settings.json)
  onboard     python -m tools.mssp --url {base} --key <that key> \\
                invite "Tailspin Toys" it@tailspin.example
              then open the link it prints and accept as Tailspin Toys
  siem        {base}/api/siem/alerts  (same key; the pull API, JSON or NDJSON)
  mail        {f"SMTP to 127.0.0.1:{catcher.port}, each email kept in .local/mail/"
                if catcher else "kept locally: the portal's Outbox shows each email; make run "
                "ARGS=--smtp-catcher sends them over SMTP to a local catcher"}
  syslog      {f"CEF lines on 127.0.0.1:{syslog.port}, kept in .local/syslog.log"
                if syslog else "make run ARGS=--syslog shows CEF lines arriving"}
  webhooks    {hooks}
Ctrl-C stops everything.
""", flush=True)
    while not stop.wait(0.5):  # timed: a signal caught by another thread must wake us
        pass
    started = time.monotonic()
    log.info("Stopping: no more messages taken; running work gets %.0f s", GRACE_SECONDS)
    watch.close()
    host.stop(grace=GRACE_SECONDS)  # storage stays up until the host is done with it
    simulator.stop()
    if syslog:
        syslog.stop()
    if catcher:
        catcher.stop()
    if webhooks:
        webhooks.stop()
    azurite.stop()
    (local / "run.json").unlink(missing_ok=True)
    lock.release()
    log.info("Stopped in %.1f s", time.monotonic() - started)
    return 0


def run(argv: list[str] | None = None) -> NoReturn:
    """Exit without waiting for runs the host abandoned at a stop (their messages were
    handed back): the interpreter would otherwise join their threads."""
    code = main(argv)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
