"""`make run`: Azurite, the simulator with demo tenants, and the app on the local host.

Everything a newcomer needs to see alerts arrive: the simulator plays Entra ID and the
Defender API of a few customer tenants (alerts keep coming), the registry is seeded with
them, and the fan-out timer runs every 20 seconds. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from devhost.azurite import Azurite, AzuriteError
from devhost.config import ensure_local_settings, load_local_settings
from devhost.host import Host, HostError
from devtools.simulator.server import Simulator, SimulatorConfig
from devtools.smtp_catcher import SmtpCatcher
from devtools.syslog_receiver import SyslogReceiver
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
            repo.add(Tenant(tenant.id, tenant.name))
            added.append(tenant.name)
    return added


def seed_rule(storage: StorageConnection) -> bool:
    """An MSSP-wide demo rule, so emails land in MailOutbox (the portal's Outbox) within a
    minute: recipients only get alerts raised after they were added."""
    rules = RuleRepository(tables.table(storage, tables.NOTIFY_RULES))
    if rules.list(GLOBAL):
        return False
    rules.save(parse_rule({"name": "Demo: High and Medium alerts to the SOC",
                           "recipients": ["soc@mssp.example"],
                           "severities": ["High", "Medium"]}, GLOBAL))
    return True


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    root = args.script_root.resolve()
    local = root / ".local"
    ensure_local_settings(root)
    load_local_settings(root)
    os.environ.setdefault("FETCH_SCHEDULE", "*/20 * * * * *")
    if not os.environ.get("PORTAL_KEY"):  # a local.settings.json from before the portal
        os.environ["PORTAL_KEY"] = secrets.token_urlsafe(24)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    azurite = simulator = host = syslog = catcher = None
    try:
        if args.smtp_catcher:
            catcher = SmtpCatcher(local / "mail").start()
            os.environ.update(catcher.settings())
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
            "MSSP_AUTHORITY_HOST": simulator.base_url,
            "MSSP_DEFENDER_API_BASE": simulator.base_url,
            "MSSP_CA_BUNDLE": str(simulator.config.ca_path),
            "MSSP_SIGN_IN_HOST": simulator.browser_base_url,  # a browser's way in, plain HTTP
            "MSSP_TENANT_ID": simulator.config.mssp_tenant_id,  # never onboarded as a customer
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{args.port}",  # the registered redirect
        })
        storage = StorageConnection.from_env(os.environ, "AzureWebJobsStorage")
        seeded = seed_registry(storage, simulator)
        seed_rule(storage)
        host = Host(root, "function_app:app", http_port=args.port)
        host.start()
    except (AzuriteError, HostError, ValueError, OSError) as exc:
        log.error("%s", exc)
        for part in (host, simulator, azurite, syslog, catcher):
            if part:
                part.stop()
        return 2
    base = host.http.base_url if host.http else ""
    state = {"http": base, "simulator": simulator.base_url, "azurite": azurite.ports,
             "azurite_pid": azurite.process.pid if azurite.process else None,
             "tenants_seeded": seeded, "portal": f"{base}/api/portal"}
    partial = local / "run.json.tmp"
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(local / "run.json")  # appears whole: readers poll for it
    print(f"""
mssp-hub is running
  portal      {base}/api/portal/login?key={os.environ["PORTAL_KEY"]}
              (signs this browser in once; the key is PORTAL_KEY, local use only)
  health      {base}/api/health
  simulator   {simulator.base_url}  (Entra ID + Defender API, demo tenants; the
              consent pages a browser opens on {simulator.browser_base_url})
  storage     Azurite on queue {azurite.ports['Queue']}, table {azurite.ports['Table']}
  fan-out     every 20 s (FETCH_SCHEDULE); alerts land in the Alerts table
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
Ctrl-C stops everything.
""", flush=True)
    while not stop.wait(0.5):  # timed: a signal caught by another thread must wake us
        pass
    log.info("Shutting down")
    host.stop()
    simulator.stop()
    azurite.stop()
    if syslog:
        syslog.stop()
    if catcher:
        catcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
