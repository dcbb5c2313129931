"""The simulator's world on disk, so `make run` can be restarted without forgetting it.

What a customer's tenant would remember is kept: tenants, their consents and revocations,
their alerts (Defender's, and Graph's other products'), their incidents, and the simulated
clock (its offset, and the last tick handed out, so a restarted simulator never issues a
time the app has already seen). What a restart may forget is not: faults, rate limiters,
counters, unredeemed codes, signing keys (so Graph's nextLinks expire).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from devtools.simulator.alerts import AlertFactory
from devtools.simulator.world import (
    StoredAlert,
    StoredGraphAlert,
    StoredIncident,
    Tenant,
    World,
)

log = logging.getLogger("simulator")
VERSION = 1


def dump(world: World) -> dict[str, Any]:
    """A JSON-able copy, taken under the world's lock (alerts' dicts are replaced, never
    changed in place, so the copy can be serialised outside it)."""
    with world.lock:
        offset, last = world.clock.state()
        return {"version": VERSION, "clock": {"offset": offset, "last_ticks": last},
                "seq": world.seq,
                "tenants": [{"id": t.id, "name": t.name, "domain": t.domain,
                             "defender": t.defender, "consents": t.consents,
                             "revoked_at": t.revoked_at,
                             "alerts": [[a.seq, a.raw] for a in t.alerts.values()],
                             "graph_alerts": [[a.seq, a.raw] for a in t.graph_alerts.values()],
                             "incidents": [[i.seq, i.raw, list(i.alert_ids)]
                                           for i in t.incidents.values()]}
                            for t in world.tenants.values()]}


def restore(world: World, data: dict[str, Any]) -> None:
    """Put a dump back into a fresh world (the apps are the caller's: its client id is
    the one consents name)."""
    if data.get("version") != VERSION:
        raise ValueError(f"unknown simulator state version {data.get('version')!r}")
    with world.lock:
        world.clock.restore(float(data["clock"]["offset"]), int(data["clock"]["last_ticks"]))
        for row in data["tenants"]:
            tenant = world.tenants.get(row["id"]) or Tenant(
                row["id"], row["name"], row["domain"],
                factory=AlertFactory(row["id"], row["domain"], seed=len(row["alerts"])))
            tenant.name, tenant.defender = row["name"], row["defender"]
            tenant.consents = {app: dict(roles) for app, roles in row["consents"].items()}
            tenant.revoked_at = {app: float(at) for app, at in row["revoked_at"].items()}
            tenant.alerts = {raw["id"]: StoredAlert(raw, seq) for seq, raw in row["alerts"]}
            tenant.graph_alerts = {raw["id"]: StoredGraphAlert(raw, seq)
                                   for seq, raw in row.get("graph_alerts", [])}
            tenant.incidents = {raw["id"]: StoredIncident(raw, seq, ids)
                                for seq, raw, ids in row.get("incidents", [])}
            tenant.graph_factory = None  # made afresh, seeded by what the tenant has
            world.tenants[tenant.id] = tenant
        world.seq = max(world.seq, int(data["seq"]))


def save(world: World, path: Path) -> None:
    """Write whole or not at all: a reader (or the next start) never sees half a file."""
    body = json.dumps(dump(world), separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(body)
    os.replace(partial, path)


def load(world: World, path: Path) -> bool:
    """True when a saved world was restored; False (and a fresh world) when there is none
    or it cannot be read (logged: the simulator starts afresh rather than not at all)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as exc:
        log.warning("Simulator state %s unreadable (%s): starting afresh", path, exc)
        return False
    try:
        restore(world, data)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("Simulator state %s not restored (%s): starting afresh", path, exc)
        return False
    return True


class Keeper:
    """Saves the world every `interval` seconds while it runs (less often as it grows: at
    most a tenth of the time goes to saving), at once when a consent is granted or revoked
    (what a restart must never lose), and once more at stop."""

    def __init__(self, world: World, path: Path, interval: float = 5.0) -> None:
        self.world, self.path, self.interval = world, path, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulator-state",
                                        daemon=True)

    def start(self) -> Keeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        pause = self.interval
        while not self._stop.is_set():
            self.world.consent_changed.wait(pause)
            self.world.consent_changed.clear()
            if self._stop.is_set():
                return
            started = time.monotonic()
            self._save()
            pause = max(self.interval, 10 * (time.monotonic() - started))

    def _save(self) -> None:
        try:
            save(self.world, self.path)
        except OSError as exc:
            log.warning("Simulator state not saved to %s: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        self.world.consent_changed.set()  # wake the thread
        self._thread.join(10)
        self._save()
