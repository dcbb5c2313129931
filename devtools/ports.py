"""A busy port reported by its number and, when we can see it, the process holding it.

`[Errno 98] Address already in use` named neither; a person then has to find out with `ss`.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from devtools.runlock import cmdline, short


class PortInUse(OSError):
    """A port this run needs is taken; the message says which and by whom."""


def check_free(port: int, what: str, host: str = "127.0.0.1") -> None:
    """Raise PortInUse if `port` cannot be bound on `host` (0 means any port: always free)."""
    if not port:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server does
    try:
        probe.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        owner = port_owner(port)
        by = f" by PID {owner[0]} ({short(owner[1])})" if owner else ""
        raise PortInUse(f"port {port} ({what}) is already in use{by}: stop that process, or "
                        f"choose another port (make run ARGS=--port=N)") from None
    finally:
        probe.close()


def port_owner(port: int) -> tuple[int, str] | None:
    """(PID, command) of the process listening on TCP `port`, if it is ours to see."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(entry / "fd" / fd) in inodes:
                    return int(entry.name), cmdline(int(entry.name))
            except OSError:
                continue
    return None
