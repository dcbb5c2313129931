"""Azurite, the storage emulator, started from node_modules and stopped by its own PID.

It dies with the process that started it (a `kill -9` of that process no longer leaves it
running on the data folder), runs in a session of its own (a Ctrl-C in the terminal reaches
the runner, which stops storage last), and logs without its access log (one line per
request, ~450 KB a minute under `make run`) into a file that never grows past LOG_LIMIT.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from devhost.lifeline import die_with_parent
from shared.storage.connection import azurite_connection_string

LOG_LIMIT = 1024 * 1024  # then the log is moved to <name>.1 (replacing it) and restarted

_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at "
                        r"http://[^:]+:(\d+)")


class AzuriteError(RuntimeError):
    """Azurite could not be started; the message says what to install or free."""


class Azurite:
    """One Azurite process. Ports 0 mean 'any free port'; no location means in memory."""

    def __init__(self, project_root: Path, *, ports: tuple[int, int, int] = (0, 0, 0),
                 location: Path | None = None, log_path: Path | None = None) -> None:
        self.root = project_root
        self.requested_ports = ports
        self.location = location
        self.log_path = log_path
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(blob=self.ports["Blob"], queue=self.ports["Queue"],
                                         table=self.ports["Table"])

    def command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise AzuriteError("Node.js is not installed (no `node` on PATH): install it "
                               "(e.g. `apt-get install nodejs npm`), then run `npm ci`.")
        script = self.root / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
        if not script.exists():
            raise AzuriteError(f"Azurite is not installed ({script} is missing): run `npm ci` "
                               "in the project root.")
        blob, queue, table = self.requested_ports
        cmd = [node, str(script), "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1",
               "--tableHost", "127.0.0.1", "--blobPort", str(blob), "--queuePort", str(queue),
               "--tablePort", str(table), "--skipApiVersionCheck", "--disableTelemetry",
               "--silent"]
        if self.location is None:
            cmd.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            cmd += ["--location", str(self.location)]
        return cmd

    def start(self, timeout: float = 60.0) -> Azurite:
        cmd = self.command()
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, cwd=self.root,
                                        start_new_session=True, preexec_fn=die_with_parent)
        ready = threading.Event()
        threading.Thread(target=self._drain, args=(ready,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                output = "".join(self._output[-20:])
                self.stop()
                raise AzuriteError(f"Azurite did not start (a port may be in use):\n{output}")
        return self

    def _drain(self, ready: threading.Event) -> None:
        assert self.process and self.process.stdout
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        sink = self.log_path.open("a") if self.log_path else None
        for line in self.process.stdout:
            if len(self._output) < 200:
                self._output.append(line)
            if sink and self.log_path:
                sink.write(line)
                sink.flush()
                if sink.tell() > LOG_LIMIT:
                    sink.close()
                    self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
                    sink = self.log_path.open("a")
            m = _LISTENING.search(line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
                if len(self.ports) == 3:
                    ready.set()
        if sink:
            sink.close()

    def stop(self) -> None:
        """Terminate our own process (by its PID), then kill it if it lingers."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
