"""A Tables request sent on a pooled connection just as the service closes it for idleness
is sent again, whatever its method (shared/storage/connection.py `ResendOnDrop`).

Found by the Graph fetch benchmark: in two of six 50,000-alert runs a Tables request of the
worker failed with `ConnectionResetError 104`. A connection idle past Azurite's 5 s
keep-alive is not the fault by itself: urllib3 sees the close and opens a new one (the
first test, on Azurite as it is). The fault is a request that crosses the close: Node
destroys the idle socket with the request unread and the client gets a reset. It happens
in a window of milliseconds (wider on a loaded machine, where Node's timer fires late), so
the other tests make it certain with a proxy that resets a connection whose next request
comes after it has been idle. The Tables SDK resends a GET after that, never a POST
(`$batch`, insert) or a PATCH (merge): those failed before the fix.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.data.tables import TableClient, UpdateMode

from devhost.azurite import azurite_connection_string
from shared.storage import batch
from shared.storage.connection import StorageConnection

IDLE = 0.3  # the proxy's keep-alive (Azurite's is 5 s)


class KeepAliveRace:
    """TCP to `target`, resetting (RST, unanswered) a connection whose next request
    arrives after it has been idle `idle` seconds since its last answer: what the client
    meets when its request crosses the service's keep-alive close."""

    def __init__(self, target: int, idle: float) -> None:
        self.target, self.idle, self.resets = target, idle, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            answered: list[float] = []  # when the last answer went back
            threading.Thread(target=self._requests, args=(client, upstream, answered),
                             daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, answered),
                             daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket,
                  answered: list[float]) -> None:
        try:
            while data := client.recv(65536):
                if answered and time.monotonic() - answered[-1] > self.idle:
                    self.resets += 1
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))  # RST, as Node's destroy
                    break
                upstream.sendall(data)
        except OSError:
            pass
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.close()

    @staticmethod
    def _answers(upstream: socket.socket, client: socket.socket,
                 answered: list[float]) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
                answered.append(time.monotonic())
        except OSError:
            pass
        with contextlib.suppress(OSError):
            client.close()


@pytest.fixture
def racing_tables(azurite, storage_env) -> Iterator[tuple[TableClient, KeepAliveRace]]:
    proxy = KeepAliveRace(azurite.ports["Table"], IDLE)
    connection = azurite_connection_string(blob=azurite.ports["Blob"],
                                           queue=azurite.ports["Queue"], table=proxy.port)
    name = f"idlereset{int(time.time() * 1000)}"
    storage_env.table_service().create_table(name)
    storage = StorageConnection.from_env({"Storage": connection}, "Storage")
    yield storage.table_service().get_table_client(name), proxy
    proxy.listener.close()


def _batch(table: TableClient) -> None:
    batch.submit_transaction(table, [("create", {"PartitionKey": "p", "RowKey": "b1"}),
                                     ("create", {"PartitionKey": "p", "RowKey": "b2"})])


def _sdk_batch(table: TableClient) -> None:
    table.submit_transaction([("create", {"PartitionKey": "p", "RowKey": "b1"}),
                              ("create", {"PartitionKey": "p", "RowKey": "b2"})])


def _insert(table: TableClient) -> None:
    table.create_entity({"PartitionKey": "p", "RowKey": "b1"})


def _merge(table: TableClient) -> None:
    table.update_entity({"PartitionKey": "p", "RowKey": "first", "Merged": True},
                        mode=UpdateMode.MERGE)


def _query(table: TableClient) -> None:
    assert len(list(table.query_entities("PartitionKey eq 'p'"))) == 1


WRITES: dict[str, Callable[[TableClient], None]] = {
    "$batch": _batch, "sdk $batch": _sdk_batch, "insert": _insert, "merge": _merge,
    "query": _query}


def test_a_connection_idle_past_azurites_keep_alive_is_replaced(storage_env):
    """Azurite closes it after 5 s; urllib3 sees the close and connects anew."""
    name = f"idle{int(time.time() * 1000)}"
    service = storage_env.table_service()
    service.create_table(name)
    table = service.get_table_client(name)
    table.upsert_entity({"PartitionKey": "p", "RowKey": "first"})
    time.sleep(5.5)
    _batch(table)
    assert len(list(table.query_entities("PartitionKey eq 'p'"))) == 3


@pytest.mark.parametrize("write", list(WRITES))
def test_a_request_that_crosses_the_keep_alive_close_is_sent_again(racing_tables, write):
    table, proxy = racing_tables
    table.upsert_entity({"PartitionKey": "p", "RowKey": "first"})  # a pooled connection
    time.sleep(IDLE + 0.2)
    WRITES[write](table)
    assert proxy.resets == 1  # the race happened, and the request went out again
    rows: dict[str, Any] = {e["RowKey"]: e for e in table.query_entities("PartitionKey eq 'p'")}
    expected = {"$batch": {"first", "b1", "b2"}, "sdk $batch": {"first", "b1", "b2"},
                "insert": {"first", "b1"}, "merge": {"first"}, "query": {"first"}}[write]
    assert set(rows) == expected  # each write carried out once
    if write == "merge":
        assert rows["first"]["Merged"] is True
