"""Putting many small messages on one queue, for the fan-out.

Why not QueueClient.send_message: it costs ~3-4 ms of Python CPU per message in azure-core
(measured by bench/fanout.py), which capped the fan-out near 200 messages/s however many
threads sent. A put here is one POST on a kept-alive `http.client` connection per thread
(stdlib; urllib3's pool measured slower under the GIL), with the same wire format as the
SDK's base64 policy, which is what the Functions host reads. Authorisation comes from the
SDK too: a short-lived add-only SAS made by `generate_queue_sas` from the account key of a
connection string, the SAS of a SAS connection string, or a bearer token from the
identity-based connection's credential (`AzureWebJobsStorage__*`).
`STORAGE_FAST_PATHS=false` (shared/storage/fast_paths.py) makes `sender()` give the SDK's
base64 QueueClient instead: same messages, the SDK's cost.
"""

from __future__ import annotations

import base64
import http.client
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from azure.storage.queue import QueueClient, QueueSasPermissions, generate_queue_sas

from shared.storage import fast_paths
from shared.storage.connection import StorageConnection

SAS_LIFETIME = timedelta(hours=2)
RENEW_BEFORE = 600  # seconds of SAS or token lifetime left when a new one is made
STORAGE_SCOPE = "https://storage.azure.com/.default"
TIMEOUT = 30


class QueueSendError(RuntimeError):
    """The queue service refused a message; `status` is its HTTP status."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"queue put failed: HTTP {status} {detail}")
        self.status = status


def encode(content: str) -> bytes:
    """The PUT body for `content`: base64 text in the XML the Queue service expects."""
    text = base64.b64encode(content.encode("utf-8")).decode("ascii")
    return (f'<?xml version="1.0" encoding="utf-8"?><QueueMessage><MessageText>{text}'
            f"</MessageText></QueueMessage>").encode("ascii")


class QueueSender:
    """send_message() for one queue, safe to call from many threads at once."""

    def __init__(self, storage: StorageConnection, queue_name: str) -> None:
        client = storage.queue(queue_name)  # created once by tables.queue() callers
        url = urlsplit(client.url)
        self.https = url.scheme == "https"
        self.host, self.port = url.hostname or "", url.port
        self.path = f"{url.path.rstrip('/')}/messages"
        self.version = client.api_version
        self._account, self._queue = client.account_name, queue_name
        self._key = getattr(client.credential, "account_key", None)
        self._sas = url.query or None  # a SAS connection string: used as it is
        self._token_credential = None if (self._key or self._sas) else client.credential
        self._auth: tuple[str, dict[str, str], float] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._ssl = ssl.create_default_context() if self.https else None

    # authorisation --------------------------------------------------------------------
    def _authorization(self) -> tuple[str, dict[str, str]]:
        """(query, headers) for a request now; renewed shortly before they expire."""
        auth = self._auth
        if auth is None or auth[2] - time.time() < RENEW_BEFORE:
            with self._lock:
                auth = self._auth
                if auth is None or auth[2] - time.time() < RENEW_BEFORE:
                    auth = self._auth = self._new_authorization()
        return auth[0], auth[1]

    def _new_authorization(self) -> tuple[str, dict[str, str], float]:
        if self._sas:
            return self._sas, {}, float("inf")
        if self._key:
            expiry = datetime.now(UTC) + SAS_LIFETIME
            sas = generate_queue_sas(self._account, self._queue, self._key,
                                     permission=QueueSasPermissions(add=True), expiry=expiry,
                                     start=datetime.now(UTC) - timedelta(minutes=5))
            return sas, {}, expiry.timestamp()
        if self._token_credential is None:
            raise QueueSendError(0, "no credential for the queue")
        token = self._token_credential.get_token(STORAGE_SCOPE)
        return "", {"Authorization": f"Bearer {token.token}"}, float(token.expires_on)

    # sending --------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.https:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT,
                                                   context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
            self._local.conn = conn
        return conn

    def send_message(self, content: str, visibility_timeout: int = 0) -> None:
        """Put one message; retried once on a dropped kept-alive connection or a 5xx.

        A retried put may, rarely, leave two copies; a duplicate fetch message is harmless
        (the worker's lease and change detection make a second fetch a no-op).
        """
        query, auth_headers = self._authorization()
        params = f"visibilitytimeout={int(visibility_timeout)}" if visibility_timeout else ""
        query = "&".join(q for q in (params, query) if q)
        target = f"{self.path}?{query}" if query else self.path
        headers = {"x-ms-version": self.version, "Content-Type": "application/xml",
                   "x-ms-date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
                   **auth_headers}
        body = encode(content)
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", target, body=body, headers=headers)
                response = conn.getresponse()
                detail = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
                continue
            if response.status == 201:
                return
            if response.status < 500 or attempt == 2:
                raise QueueSendError(response.status, detail[:300].decode("utf-8", "replace"))
        raise AssertionError("unreachable")


def sender(storage: StorageConnection, queue_name: str) -> QueueSender | QueueClient:
    """What puts messages on `queue_name` (created already): the lean sender, or with
    STORAGE_FAST_PATHS=false the SDK's base64 client; both take
    `send_message(content, visibility_timeout=...)`."""
    if fast_paths.enabled():
        return QueueSender(storage, queue_name)
    return storage.queue(queue_name)
