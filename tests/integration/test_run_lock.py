"""The lock of `make run` on `.local/`, and busy ports named with their owner, on real
processes (a holder in a process of its own, killed with SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from devtools.ports import PortInUse, check_free
from devtools.runlock import RunLock, RunLocked, stop_leftovers
from tests.conftest import ROOT
from tests.integration.devhost_fixtures import alive

HOLDER = """
import subprocess, sys, time
from pathlib import Path
from devtools.runlock import RunLock
lock = RunLock(Path(sys.argv[1])).acquire()
child = subprocess.Popen(["sleep", "120"], start_new_session=True)  # no lifeline: orphaned
while b"sleep" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():  # exec'd
    time.sleep(0.01)
lock.add_child("sleeper", child.pid)
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    yield proc, child
    for pid in (proc.pid, child):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)


def test_a_held_lock_names_its_holder_and_how_to_stop_it(tmp_path, holder):
    proc, _ = holder
    with pytest.raises(RunLocked) as refused:
        RunLock(tmp_path).acquire()
    assert f"PID {proc.pid}" in str(refused.value)
    assert f"kill {proc.pid}" in str(refused.value)
    assert "-c" in str(refused.value)  # the holder's command line


def test_a_dead_holders_lock_is_taken_over_and_its_leftover_stopped(tmp_path, holder):
    proc, child = holder
    proc.kill()
    proc.wait(10)
    assert alive(child)  # what a kill -9 used to leave behind
    lock = RunLock(tmp_path).acquire()
    try:
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        lock.release()
    RunLock(tmp_path).acquire().release()  # released: free for the next run


def test_a_reused_pid_is_never_stopped():
    """A child's PID now used by another program (its command line differs) is left be."""
    stale = {"pid": 1, "children": {"Azurite": {"pid": os.getpid(), "command": "node x"}}}
    assert stop_leftovers(stale) == []


def test_a_busy_port_is_named_with_its_owner():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        with pytest.raises(PortInUse) as busy:
            check_free(port, "the app's HTTP port")
        assert f"port {port}" in str(busy.value)
        assert f"PID {os.getpid()}" in str(busy.value)
    finally:
        listener.close()
    check_free(port, "the app's HTTP port")  # free again
