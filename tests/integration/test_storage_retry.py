"""A connection the storage service drops costs a worker about a second, not fifteen.

Found by the ingest benchmark: a pooled connection Azurite had just closed (it closes them
after 5 s idle, Azure's front ends later) made a relay message's send wait 15-20 s in the
queue SDK's default retry. Here a proxy in front of Azurite drops the first request it
gets, as a closed keep-alive connection does, and the send goes through on the retry.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from devhost.azurite import azurite_connection_string
from shared.storage.connection import StorageConnection


class DroppingProxy:
    """TCP to `target`; the first connection is closed once its request has arrived,
    unanswered (so the request was never carried out)."""

    def __init__(self, target: int) -> None:
        self.target, self.dropped, self.forwarded = target, 0, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.dropped:
                self.dropped += 1
                client.recv(65536)
                client.close()
                continue
            self.forwarded += 1
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied_queues(azurite) -> Iterator[tuple[StorageConnection, DroppingProxy]]:
    proxy = DroppingProxy(azurite.ports["Queue"])
    connection = azurite_connection_string(blob=azurite.ports["Blob"], queue=proxy.port,
                                           table=azurite.ports["Table"])
    yield StorageConnection.from_env({"Storage": connection}, "Storage"), proxy
    proxy.listener.close()


def test_a_dropped_connection_is_retried_within_seconds(storage_env, proxied_queues):
    storage, proxy = proxied_queues
    name = f"retry{int(time.time() * 1000)}"
    storage_env.queue(name).create_queue()
    started = time.monotonic()
    storage.queue(name).send_message("after a dropped connection")
    took = time.monotonic() - started
    assert proxy.dropped == 1 and proxy.forwarded >= 1
    assert took < 5, f"the send waited {took:.1f} s for its retry"
    sent = [m.content for m in storage_env.queue(name).receive_messages()]
    assert sent == ["after a dropped connection"]  # once: the dropped one was never done
