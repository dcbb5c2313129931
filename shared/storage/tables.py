"""Table and queue names, and creating them once per process."""

from __future__ import annotations

import contextlib
import threading

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from shared.storage.connection import StorageConnection

TENANTS = "Tenants"
ALERTS = "Alerts"
INGEST_STATE = "IngestState"
RUN_HISTORY = "RunHistory"
POISON_LOG = "PoisonLog"
APP_HEALTH = "AppHealth"

FETCH_QUEUE = "fetch-requests"
RELAY_QUEUE = "alert-relay"
NOTIFY_QUEUE = "notify-events"
SIEM_QUEUE = "siem-events"

_created: set[tuple[str, str]] = set()
_lock = threading.Lock()


def table(storage: StorageConnection, name: str) -> TableClient:
    """A client for `name`, creating the table the first time this process asks."""
    client = storage.table_service().get_table_client(name)
    key = (storage.name + (storage.connection_string or storage.table_service_uri or ""), name)
    if key not in _created:
        with contextlib.suppress(ResourceExistsError):
            client.create_table()
        with _lock:
            _created.add(key)
    return client


def queue(storage: StorageConnection, name: str) -> QueueClient:
    """A base64 queue client for `name`, creating the queue the first time."""
    client = storage.queue(name)
    key = (storage.name + (storage.connection_string or storage.queue_service_uri or ""),
           "q:" + name)
    if key not in _created:
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        with _lock:
            _created.add(key)
    return client
