"""The local host: index the app once, then serve HTTP, run timers and poll queues."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from azure.storage.queue import QueueClient

from devhost.config import HostConfig
from devhost.http_server import HttpHost, Keys
from devhost.invoker import Invoker
from devhost.loader import HTTP, QUEUE, TIMER, load_app
from devhost.queues import QueueListener
from devhost.timers import ScheduleMonitor, TimerRunner
from shared.storage.connection import StorageConnection

log = logging.getLogger("devhost")

KEY_SETTINGS = ("DEVHOST_FUNCTION_KEY", "DEVHOST_MASTER_KEY")
MONITOR_TABLE = "devhosttimers"


class HostError(RuntimeError):
    """The host cannot start; the message says which setting or file to fix."""


class Host:
    """Runs the functions of one app with the Functions host's semantics."""

    def __init__(self, script_root: Path, app_spec: str = "function_app:app",
                 http_host: str = "127.0.0.1", http_port: int = 7071,
                 host_id: str | None = None, config: HostConfig | None = None) -> None:
        self.root = script_root.resolve()
        self.config = config or HostConfig.load(self.root)
        self.functions = load_app(app_spec, self.root)
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        self.host_id = host_id or "devhost" + digest
        self._started = self._stopped = False
        self._connections: dict[str, StorageConnection] = {}
        threads = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
        self.invoker = Invoker(self._queue_client, self.config.queues.message_encoding,
                               str(self.root), int(threads) if threads else None)
        by_type = {t: [f for f in self.functions if f.trigger_type == t]
                   for t in (HTTP, TIMER, QUEUE)}
        self.http: HttpHost | None = None
        if by_type[HTTP]:
            missing = [k for k in KEY_SETTINGS if not os.environ.get(k)]
            if missing:
                raise HostError(f"set {' and '.join(missing)} in local.settings.json Values: "
                                "the keys this host accepts for function and admin auth levels")
            keys = Keys(os.environ["DEVHOST_FUNCTION_KEY"], os.environ["DEVHOST_MASTER_KEY"])
            self.http = HttpHost(by_type[HTTP], self.invoker, keys, self.config.route_prefix,
                                 http_host, http_port)
        monitor = None
        if by_type[TIMER]:
            table = self.connection("AzureWebJobsStorage").table_service().get_table_client(
                MONITOR_TABLE)
            monitor = ScheduleMonitor(table, self.host_id)
        self.timers = [TimerRunner(f, self.invoker, monitor) for f in by_type[TIMER]]
        self.queues = [QueueListener(f, self.invoker, self.config.queues)
                       for f in by_type[QUEUE]]

    def connection(self, name: str) -> StorageConnection:
        if name not in self._connections:
            self._connections[name] = StorageConnection.from_env(os.environ, name)
        return self._connections[name]

    def _queue_client(self, connection: str, queue_name: str) -> QueueClient:
        return self.connection(connection).queue(queue_name, base64=False)

    def start(self) -> None:
        self._started = True
        for part in [self.http, *self.timers, *self.queues]:
            if part:
                part.start()
        log.info("Host started: %d functions (%s)", len(self.functions),
                 ", ".join(f"{f.name}: {f.trigger_type}" for f in self.functions))

    def stop(self, grace: float = 30.0) -> None:
        """Stop taking work and give running invocations `grace` seconds to finish; queue
        messages still held then go back to their queue at once, and the runs left over
        are abandoned (their messages are no longer theirs to settle)."""
        if self._stopped:  # a second stop has nothing left to do
            return
        self._stopped = True
        if not self._started:
            self.invoker.shutdown()
            return
        deadline = time.monotonic() + grace
        for part in [*self.timers, *self.queues]:
            part.stop()
        drained = True
        for part in [*self.timers, *self.queues]:
            left = max(0.0, deadline - time.monotonic())
            drained = part.join(left) is not False and drained
        for queue in self.queues:
            queue.hand_back()
        if self.http:
            self.http.stop()
        self.invoker.shutdown(wait=drained)
        log.info("Host stopped" if drained else "Host stopped; runs still going were abandoned")
