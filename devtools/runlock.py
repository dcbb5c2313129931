"""One `make run` per `.local/`: a lock taken before anything is started or written.

A second run used to start a second Azurite and simulator on the same folder, overwrite
the simulator's CA file and only then die on a busy port, leaving the first run failing
every fetch. The lock is an flock on `.local/run.lock`: the kernel drops it when its holder
dies however it dies, so a lock whose holder is gone is stale by construction and simply
taken over. The file also says who holds it (PID, command) and which children it started,
so a next run can name the holder, or stop a child that outlived a killed run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("run")


class RunLocked(RuntimeError):
    """Another run holds the lock; the message names it and says how to stop it."""


def cmdline(pid: int) -> str:
    """The command line of a live process, or '' if it is gone (or not readable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def short(command: str, limit: int = 120) -> str:
    """A command line fit for one line of a message."""
    flat = " ".join(command.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


class RunLock:
    """`.local/run.lock`, held for the life of this process."""

    def __init__(self, local: Path) -> None:
        self.path = local / "run.lock"
        self._file: IO[str] | None = None
        self._info: dict[str, Any] = {}

    def acquire(self) -> RunLock:
        """Take the lock or raise RunLocked; children a dead holder left behind are stopped."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            raise RunLocked(describe_holder(self.path, holder)) from None
        handle.seek(0)
        stale = _parse(handle.read())
        if stale.get("pid"):
            log.info("Taking over the lock of a run that has ended (PID %s)", stale["pid"])
            stop_leftovers(stale)
        self._file = handle
        self.record(pid=os.getpid(), command=cmdline(os.getpid()), started=time.time(),
                    children={})
        return self

    def record(self, **fields: Any) -> None:
        """Write who holds the lock, and what it started, into the lock file."""
        assert self._file is not None, "the lock is not held"
        self._info.update(fields)
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(self._info))
        self._file.flush()

    def add_child(self, name: str, pid: int) -> None:
        """A child process to stop at the next start if it outlives this run."""
        children = dict(self._info.get("children") or {})
        children[name] = {"pid": pid, "command": cmdline(pid)}
        self.record(children=children)

    def release(self) -> None:
        if self._file:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing drops the flock
            self._file = None


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def describe_holder(path: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid")
    if not pid:
        return f"another run holds {path} (starting up); wait a moment, then try again"
    command = short(cmdline(int(pid)) or holder.get("command") or "?")
    return (f"another `make run` is already running on {path.parent} (PID {pid}: {command}); "
            f"stop it with Ctrl-C in its terminal, or `kill {pid}`, then start again")


def stop_leftovers(stale: dict[str, Any]) -> list[int]:
    """Stop the children a dead run recorded, if each is still the same process (its
    command line unchanged: a PID can be reused). Returns the PIDs stopped."""
    stopped = []
    for name, child in (stale.get("children") or {}).items():
        pid, command = int(child.get("pid") or 0), child.get("command") or ""
        if not pid or not command or cmdline(pid) != command:
            continue
        log.warning("Stopping %s (PID %d), left running by the previous run", name, pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while cmdline(pid) == command and time.monotonic() < deadline:
            time.sleep(0.1)
        if cmdline(pid) == command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopped.append(pid)
    return stopped
