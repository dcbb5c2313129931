"""`python -m devtools.simulator`: the simulator as its own process (what `make run` starts)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from devtools.simulator.server import Simulator, SimulatorConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (0 = any free port)")
    parser.add_argument("--state-dir", type=Path, default=Path(".local/simulator"),
                        help="where the CA, the app certificate and simulator.json go")
    parser.add_argument("--redirect-uri", action="append", default=[],
                        help="a redirect URI registered on the MSSP app (repeatable)")
    parser.add_argument("--browser-port", type=int, default=None,
                        help="also serve the consent pages on plain HTTP on this port "
                             "(0 = any free port), for a real browser")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep tenants, consents, alerts and the clock in "
                             "STATE_DIR/world.json across restarts")
    parser.add_argument("--demo", action="store_true", help="seed demo tenants")
    parser.add_argument("--rate", type=float, default=0.5,
                        help="with --demo: new or changed alerts per second (0 = none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    state = args.state_dir.resolve()
    config = SimulatorConfig(ca_path=state / "ca.pem", port=args.port,
                             redirect_uris=args.redirect_uri,
                             certificate_path=state / "app-certificate.pem",
                             browser_port=args.browser_port,
                             state_path=state / "world.json" if args.keep_state else None)
    sim = Simulator(config).start()
    tenants = sim.seed_demo() if args.demo else []
    if args.demo and args.rate > 0:
        sim.start_demo(args.rate)
    info = {"base_url": sim.base_url, "browser_base_url": sim.browser_base_url,
            "ca_path": str(config.ca_path),
            "client_id": config.client_id, "client_secret": config.client_secret,
            "triage_client_id": config.triage_client_id,
            "triage_client_secret": config.triage_client_secret,
            "certificate_path": str(config.certificate_path),
            "mssp_tenant_id": config.mssp_tenant_id,
            "tenants": [{"id": t.id, "name": t.name, "consented": bool(t.consents),
                         "defender": t.defender} for t in tenants]}
    partial = state / "simulator.json.tmp"
    partial.write_text(json.dumps(info, indent=2))
    partial.chmod(0o600)
    partial.replace(state / "simulator.json")  # appears whole: readers poll for it
    logging.info("Simulator listening on %s (CA %s)", sim.base_url, config.ca_path)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):  # timed: a signal caught by another thread must wake us
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
