"""`python -m devhost`: run function_app.py locally, optionally with a project Azurite."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from devhost.azurite import Azurite, AzuriteError
from devhost.config import ensure_local_settings, load_local_settings
from devhost.host import Host, HostError

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where package.json and node_modules are


def _ports(text: str) -> tuple[int, int, int]:
    blob, queue, table = (int(p) for p in text.split(","))
    return blob, queue, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devhost", description=__doc__)
    parser.add_argument("--script-root", type=Path, default=Path.cwd(),
                        help="folder with host.json and local.settings.json")
    parser.add_argument("--app", default="function_app:app", help="module:attribute")
    parser.add_argument("--port", type=int, help="HTTP port (default LocalHttpPort or 7071)")
    parser.add_argument("--azurite", action="store_true",
                        help="start the project's Azurite and point AzureWebJobsStorage at it")
    parser.add_argument("--azurite-ports", type=_ports, default=(0, 0, 0),
                        help="blob,queue,table ports (0 = any free port)")
    parser.add_argument("--azurite-data", type=Path, default=Path(".local/azurite"),
                        help="where Azurite keeps its data ('-' = in memory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    logging.getLogger("azure").setLevel(logging.WARNING)  # host.json-style: SDK chatter off
    log = logging.getLogger("devhost")
    root = args.script_root.resolve()
    if ensure_local_settings(root):
        log.info("Created local.settings.json from the sample, with new random keys")
    host_section = load_local_settings(root)
    port = args.port or int(host_section.get("LocalHttpPort", 7071))

    azurite = None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C and SIGTERM: the same clean stop
        signal.signal(signum, lambda *_: stop.set())
    try:
        if args.azurite:
            location = None if str(args.azurite_data) == "-" else root / args.azurite_data
            azurite = Azurite(PROJECT_ROOT, ports=args.azurite_ports, location=location,
                              log_path=root / ".local" / "azurite.log").start()
            os.environ["AzureWebJobsStorage"] = azurite.connection_string
            log.info("Azurite started (pid %d): blob %d, queue %d, table %d", azurite.process.pid,
                     azurite.ports["Blob"], azurite.ports["Queue"], azurite.ports["Table"])
        host = Host(root, args.app, http_port=port)
        host.start()
    except (AzuriteError, HostError, ValueError) as exc:
        log.error("%s", exc)
        if azurite:
            azurite.stop()
        return 2
    state = {"pid": os.getpid(), "http": host.http.base_url if host.http else None,
             "azurite": ({**azurite.ports, "pid": azurite.process.pid} if azurite else None)}
    (root / ".local").mkdir(exist_ok=True)
    partial = root / ".local" / "devhost.json.tmp"
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(root / ".local" / "devhost.json")  # appears whole, just after start
    if host.http:
        for f in host.functions:
            if f.trigger_type == "httpTrigger":
                print(f"  {f.name}: {host.http.base_url}/{host.config.route_prefix}/"
                      f"{f.trigger.route or f.name}", flush=True)
    while not stop.wait(0.5):  # timed: a signal caught by another thread must wake us
        pass
    log.info("Shutting down")
    host.stop()
    if azurite:
        azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
