"""`python -m devhost --azurite`, as `make run` starts it: health over HTTP, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import ROOT
from tests.e2e.app_copy import copy_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float = 90) -> str:
    """SIGTERM, as an operator would; a process that does not stop in time is killed (so
    no test leaves one behind) and its output is shown with the failure."""
    proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"did not stop on SIGTERM within {timeout}s:\n{output[-4000:]}"
                             ) from None
    return output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_devhost_serves_health_with_its_own_azurite_and_stops_cleanly(tmp_path: Path):
    copy_app(tmp_path)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "DEVHOST_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--script-root", str(tmp_path), "--port", str(port),
         "--azurite", "--azurite-data", "-"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert answer is not None, "host did not answer"
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "healthy"
        assert body["checks"]["queues"]["ok"] and body["checks"]["tables"]["ok"]
        assert body["versions"]["azure-functions"] != "missing"

        settings = json.loads((tmp_path / "local.settings.json").read_text())
        key = settings["Values"]["DEVHOST_FUNCTION_KEY"]
        assert len(key) >= 24 and "replace" not in key
        assert (tmp_path / "local.settings.json").stat().st_mode & 0o077 == 0
        state_file = tmp_path / ".local" / "devhost.json"
        deadline = time.monotonic() + 20  # written just after the host starts serving
        while not state_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        state = json.loads(state_file.read_text())
        azurite_pid = state["azurite"]["pid"]
        assert _alive(azurite_pid)
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output
    assert "Executed 'Functions.health' (Succeeded" in output
    assert "Host stopped" in output
    assert not _alive(azurite_pid)
