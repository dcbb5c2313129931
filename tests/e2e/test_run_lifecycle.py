"""`make run` cannot trip over itself: one run per `.local/`, nothing outlives it, Ctrl-C
stops it in seconds without losing or poisoning a message, bad settings stop the start.

Through the real processes: `make run` (the project's Makefile, setup skipped) in a session
of its own, as a terminal would start it; a terminal's Ctrl-C is a SIGINT to that group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from devhost.azurite import Azurite
from devtools.simulator.client import SimulatorClient
from shared.messages import FetchRequest
from shared.storage import tables
from shared.storage.connection import StorageConnection, azurite_connection_string
from tests.conftest import ROOT
from tests.e2e.app_copy import copy_app
from tests.e2e.test_devhost_cli import _free_port
from tests.integration.devhost_fixtures import alive

FETCH_LINE = re.compile(r"fetch tenant=\S+ outcome=(success|partial)")


class Run:
    """One `make run` (or the runner alone) on a script root, its output read as it comes."""

    def __init__(self, root: Path, port: int, *, make: bool = True,
                 data: str = "-", settings: dict[str, str] | None = None) -> None:
        args = ["--script-root", str(root), "--port", str(port), "--azurite-data", data,
                "--rate", "2"]
        cmd = (["make", "-s", "-o", "setup", "run", f"PY={sys.executable}",
                "ARGS=" + " ".join(args)] if make
               else [sys.executable, "-m", "devtools.run", *args])
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AzureWebJobs", "DEVHOST_", "MSSP_", "FETCH_", "SIEM_",
                                    "MAKE", "MFLAGS"))}
        env.update({"FETCH_SCHEDULE": "*/2 * * * * *", **(settings or {})})
        self.root, self.port = root, port
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout),
                                        daemon=True)
        self._reader.start()
        self.state: dict = {}

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def ready(self, timeout: float = 90) -> Run:
        run_json = self.root / ".local" / "run.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if run_json.exists():
                state = json.loads(run_json.read_text())
                if state.get("pid") and alive(state["pid"]) and "mssp-hub is running" in \
                        self.output:
                    self.state = state
                    return self
            time.sleep(0.2)
        raise AssertionError(f"make run did not start:\n{self.output[-4000:]}")

    def exit_code(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s:\n"
                                 f"{self.output[-4000:]}") from None
        self._reader.join(10)
        return code

    def fetches(self) -> int:
        return len(FETCH_LINE.findall(self.output))

    def pids(self) -> list[int]:
        return [p for p in (self.proc.pid, self.state.get("pid"), self.state.get("azurite_pid"))
                if p]

    def kill(self) -> None:
        """Teardown: nothing of this run survives a failed test."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def runs():
    started: list[Run] = []

    def start(*args, **kwargs) -> Run:
        started.append(Run(*args, **kwargs))
        return started[-1]

    yield start
    for run in started:
        if run.proc.poll() is None or any(alive(p) for p in run.pids()):
            print(run.output[-4000:])
        run.kill()


def _gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)


def test_a_second_run_is_refused_and_the_first_keeps_working(tmp_path, runs):
    (tmp_path / "app").mkdir()
    (tmp_path / "other").mkdir()
    root = copy_app(tmp_path / "app")
    port = _free_port()
    first = runs(root, port).ready()
    runner = first.state["pid"]
    ca = root / ".local" / "simulator" / "ca.pem"
    ca_before = (ca.read_bytes(), ca.stat().st_mtime_ns)
    _wait(lambda: first.fetches() >= 1, 30, "fetch by the first run")

    second = runs(root, _free_port())
    assert second.exit_code(30) != 0
    assert f"PID {runner}" in second.output and f"kill {runner}" in second.output
    assert "mssp-hub is running" not in second.output and "Traceback" not in second.output
    assert (ca.read_bytes(), ca.stat().st_mtime_ns) == ca_before  # nothing was started
    assert json.loads((root / ".local" / "run.json").read_text())["pid"] == runner

    # another script root (no lock shared) on the first run's port: named, with its owner
    elsewhere = runs(copy_app(tmp_path / "other"), port)
    assert elsewhere.exit_code(30) != 0
    assert f"port {port}" in elsewhere.output and f"PID {runner}" in elsewhere.output
    assert not (tmp_path / "other" / ".local" / "simulator").exists()

    # the first run is unharmed: healthy, and its fetches still succeed
    assert requests.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code == 200
    seen = first.fetches()
    _wait(lambda: first.fetches() > seen, 30, "new successful fetch after the refusals")
    assert "CERTIFICATE_VERIFY_FAILED" not in first.output

    # quiet console: no line per invocation; Azurite's log bounded (no access log)
    assert "Executed 'Functions." not in first.output
    assert (root / ".local" / "azurite.log").stat().st_size < 10_000

    # SIGINT sent to make alone (not its group) stops the run too
    started = time.monotonic()
    os.kill(first.proc.pid, signal.SIGINT)
    first.exit_code(15)
    assert time.monotonic() - started < 10
    assert _gone(first.pids()) == []
    assert "Stopped in" in first.output


def _queues_settled(data: Path) -> dict[str, tuple[int, int]]:
    """Per queue left in Azurite's data folder: (messages, of which visible right now)."""
    azurite = Azurite(ROOT, location=data).start()
    try:
        storage = StorageConnection.from_env({"AzureWebJobsStorage": azurite_connection_string(
            blob=azurite.ports["Blob"], queue=azurite.ports["Queue"],
            table=azurite.ports["Table"])}, "AzureWebJobsStorage")
        found = {}
        for item in storage.queue_service().list_queues():
            client = storage.queue(item.name, base64=False)
            total = client.get_queue_properties().approximate_message_count
            visible = len(list(client.peek_messages(max_messages=32)))
            found[item.name] = (total, visible)
        return found
    finally:
        azurite.stop()


def test_nothing_outlives_a_killed_run_and_ctrl_c_stops_under_load(tmp_path, runs):
    root = copy_app(tmp_path)
    port = _free_port()
    data = root / ".local" / "azurite"
    killed = runs(root, port, data=".local/azurite").ready()
    pids = killed.pids()
    os.kill(killed.state["pid"], signal.SIGKILL)  # the runner, make's child
    assert _gone(pids) == [], "a process outlived kill -9 of the runner"

    # the lock it left is stale: taken over; and kill -9 of make stops the runner and all
    make_killed = runs(root, port, data=".local/azurite").ready()
    os.kill(make_killed.proc.pid, signal.SIGKILL)
    make_killed.proc.wait(10)
    assert _gone(make_killed.pids()) == [], "a process outlived kill -9 of make"

    # Ctrl-C while fetches hang in flight
    run = runs(root, port, data=".local/azurite").ready()
    _wait(lambda: run.fetches() >= 1, 30, "first fetch")
    ca = str(root / ".local" / "simulator" / "ca.pem")
    simulator = SimulatorClient(run.state["simulator"], ca)
    customers = [t["id"] for t in requests.get(f"{run.state['simulator']}/_sim/tenants",
                                               timeout=10, verify=ca).json()]
    for tenant in customers:
        simulator.fault(tenant, "hang", 50, seconds=120)
    storage = StorageConnection.from_env({"AzureWebJobsStorage": azurite_connection_string(
        blob=run.state["azurite"]["Blob"], queue=run.state["azurite"]["Queue"],
        table=run.state["azurite"]["Table"])}, "AzureWebJobsStorage")
    fetch_queue = tables.queue(storage, tables.FETCH_QUEUE)
    for tenant in customers * 10:  # more than the host runs at once: some wait their turn
        fetch_queue.send_message(FetchRequest(tenant, reason="continue").to_message())
    time.sleep(4)  # the host takes them; the fetches hang on Defender

    started = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    run.exit_code(20)
    took = time.monotonic() - started
    assert took < 10, f"Ctrl-C took {took:.1f} s"
    assert _gone(run.pids()) == []
    assert "handed back" in run.output, run.output[-3000:]

    queues = _queues_settled(data)
    # the fetches that hung were handed back: visible at once, not held for a 10-minute
    # lease (fetch requests are never sent delayed here; relay retries may be, by design)
    total, visible = queues[tables.FETCH_QUEUE]
    assert total > 0 and visible == min(total, 32), queues
    poisoned = {n: c for n, c in queues.items() if n.endswith("-poison") and c[0]}
    assert poisoned == {}


@pytest.mark.parametrize(("settings", "text", "secret"), [
    ({"ONBOARDING_STATE_KEY": "too-short-a-key"}, "ONBOARDING_STATE_KEY", "too-short-a-key"),
    ({"FETCH_PAGE_SIZE": "many-pages"}, "FETCH_PAGE_SIZE", "many-pages"),
])
def test_bad_settings_stop_the_start(tmp_path, runs, settings, text, secret):
    root = copy_app(tmp_path)
    run = runs(root, _free_port(), make=False, settings=settings)
    assert run.exit_code(60) == 2
    assert text in run.output and secret not in run.output
    assert "mssp-hub is running" not in run.output and "Traceback" not in run.output


def test_broken_local_settings_name_the_file_and_line(tmp_path, runs):
    root = copy_app(tmp_path)
    (root / "local.settings.json").write_text('{\n  "Values": {\n    "A": "1"\n    "B": 2\n}}')
    run = runs(root, _free_port(), make=False)
    assert run.exit_code(30) == 2
    assert "local.settings.json" in run.output and "line 4" in run.output
    assert "Traceback" not in run.output and "mssp-hub is running" not in run.output
