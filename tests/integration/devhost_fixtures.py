"""Start the local host on the semantics test app, one isolated set of queues per test."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from devhost.host import Host
from shared.storage.connection import StorageConnection

APP_MODULE = "tests.apps.semantics_app"
FUNCTION_KEY, MASTER_KEY = "test-function-key", "test-master-key"


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, every: float = 0.05
              ) -> object:
    """Poll until `predicate` is truthy; fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"condition not met within {timeout}s")


class HostFactory:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 storage: StorageConnection) -> None:
        self.tmp_path, self.monkeypatch, self.storage = tmp_path, monkeypatch, storage
        self.prefix = "t" + uuid.uuid4().hex[:12]
        self.hosts: list[tuple[Host, bool]] = []
        monkeypatch.setenv("TEST_PREFIX", self.prefix)
        monkeypatch.setenv("TEST_TICK", "*/1 * * * * *")
        monkeypatch.setenv("DEVHOST_FUNCTION_KEY", FUNCTION_KEY)
        monkeypatch.setenv("DEVHOST_MASTER_KEY", MASTER_KEY)
        monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "16")

    def queue_name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def create(self, **queues: object) -> tuple[Host, ModuleType]:
        """A host (not started) with host.json extensions.queues overridden by `queues`."""
        settings = {"maxPollingInterval": "00:00:00.200", "visibilityTimeout": "00:00:00",
                    "maxDequeueCount": 4, **queues}
        (self.tmp_path / "host.json").write_text(json.dumps(
            {"version": "2.0", "extensions": {"queues": settings}}))
        sys.modules.pop(APP_MODULE, None)
        host = Host(self.tmp_path, f"{APP_MODULE}:app", http_port=0, host_id=self.prefix)
        self.hosts.append((host, False))
        return host, sys.modules[APP_MODULE]

    def start(self, **queues: object) -> tuple[Host, ModuleType]:
        host, module = self.create(**queues)
        host.start()
        return host, module

    def close(self) -> None:
        for host, _ in self.hosts:
            host.stop()


@pytest.fixture
def hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          storage_env: StorageConnection) -> Iterator[HostFactory]:
    factory = HostFactory(tmp_path, monkeypatch, storage_env)
    yield factory
    factory.close()


def alive(pid: int) -> bool:
    """Running (a zombie has ended: only its exit status waits to be collected)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
