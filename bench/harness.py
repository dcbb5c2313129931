"""Benchmark set-up: Azurite (in memory) and the simulator in its own process, so the
worker being measured does not share its interpreter with the Defender it calls."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devhost.azurite import Azurite
from devtools.simulator.client import SimulatorClient
from shared.config import Settings
from shared.storage.connection import StorageConnection

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), to see where the cores went."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Env:
    storage: StorageConnection
    sim: SimulatorClient
    info: dict
    azurite_pid: int
    sim_pid: int

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of this process (the worker), Azurite and the simulator."""
        return {"worker": time.process_time(), "azurite": cpu_seconds(self.azurite_pid),
                "simulator": cpu_seconds(self.sim_pid)}

    def environ(self, **overrides: str) -> dict[str, str]:
        """The app settings that point the app at this Azurite and simulator."""
        return {"AzureWebJobsStorage": self.storage.connection_string or "",
                "MSSP_CLIENT_ID": self.info["client_id"],
                "MSSP_CLIENT_SECRET": self.info["client_secret"],
                "MSSP_AUTHORITY_HOST": self.info["base_url"],
                "MSSP_DEFENDER_API_BASE": self.info["base_url"],
                "MSSP_CA_BUNDLE": self.info["ca_path"],
                "ONBOARDING_STATE_KEY": "bench-state-key-0123456789-abcdefghijklmnop",
                **overrides}

    def settings(self, **overrides: str) -> Settings:
        return Settings.from_env(self.environ(**overrides))


@contextlib.contextmanager
def environment() -> Iterator[Env]:
    state = Path(tempfile.mkdtemp(prefix="mssp-bench-"))
    azurite = Azurite(ROOT, log_path=state / "azurite.log").start()
    proc = subprocess.Popen([sys.executable, "-m", "devtools.simulator", "--state-dir",
                             str(state)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        info_path = state / "simulator.json"
        deadline = time.monotonic() + 30
        while not info_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        info = json.loads(info_path.read_text())
        sim = SimulatorClient(info["base_url"], info["ca_path"])
        sim.limits(per_minute=100_000, per_hour=1_000_000)  # measure us, not the throttle
        os.environ["AzureWebJobsStorage"] = azurite.connection_string
        assert azurite.process is not None
        yield Env(StorageConnection.from_env(os.environ, "AzureWebJobsStorage"), sim, info,
                  azurite.process.pid, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        azurite.stop()
