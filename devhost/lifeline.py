"""Nothing outlives its parent: child processes die with us, we stop when our parent goes.

A `kill -9` of `make run` used to leave Azurite running on `.local/`; the next run started a
second one on the same data folder. On Linux the kernel does the work: PR_SET_PDEATHSIG
sends a signal to a process when the thread that started it exits, however it exits.

`make` is a special parent: on SIGINT or SIGTERM it waits for its recipe to end, and only
forwards SIGTERM. So `ParentWatch` also notices when `make` sits in its fatal-signal
handler (the signal is then blocked in its mask, which it never is otherwise for long) and
stops us as if we had been sent the signal ourselves.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("devhost")

PR_SET_PDEATHSIG = 1
# make blocks the signal it is handling while it waits for its children to end
_FATAL = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent ends (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0


def die_with_parent() -> None:
    """A `preexec_fn` for children that must not outlive the process starting them."""
    set_parent_death_signal(signal.SIGKILL)


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def in_fatal_signal_handler(pid: int) -> int | None:
    """The fatal signal `pid` is handling right now (blocked in its mask), if any."""
    try:
        blocked = int(_status(pid).get("SigBlk", "0").strip(), 16)
    except ValueError:
        return None
    for signum in _FATAL:
        if blocked & (1 << (signum - 1)):
            return signum
    return None


def process_name(pid: int) -> str:
    return _status(pid).get("Name", "").strip()


class ParentWatch:
    """Calls `stop` once when our parent has gone, or when `make` (our parent) was asked to
    stop: SIGTERM from the kernel on the parent's death, a poll for the rest."""

    def __init__(self, stop: Callable[[], None], every: float = 0.5) -> None:
        self._stop_cb, self.every = stop, every
        self.parent = os.getppid()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parent-watch", daemon=True)

    def start(self) -> ParentWatch:
        set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != self.parent:  # it died before the line above
            self._stop_cb()
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()

    def _run(self) -> None:
        is_make = process_name(self.parent) == "make"
        seen = 0
        while not self._done.wait(self.every):
            if os.getppid() != self.parent:
                log.warning("the parent process (PID %d) has gone: stopping", self.parent)
                self._stop_cb()
                return
            signum = in_fatal_signal_handler(self.parent) if is_make else None
            seen = seen + 1 if signum else 0
            if seen >= 2:  # twice in a row: not the instant make blocks signals to fork
                log.warning("make (PID %d) got %s: stopping", self.parent,
                            signal.Signals(signum).name)
                self._stop_cb()
                return
