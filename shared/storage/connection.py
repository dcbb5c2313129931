"""How the app reaches its storage account: a connection string or a managed identity.

Mirrors the host's own rules for a connection named `X`: the setting `X` holds a
connection string; otherwise `X__queueServiceUri`/`X__tableServiceUri` (or
`X__accountName`) with `X__credential`/`X__clientId` select identity-based access.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.storage.queue import (
    ExponentialRetry,
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ProtocolError
from urllib3.util.retry import Retry

from shared.settings_error import SettingsError
from shared.storage import limits

POOL_SIZE = 64
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def _queue_retry() -> ExponentialRetry:
    """Retries 1, 3, 5 and 9 s (+-0.5) after a failure. The SDK's default waits 15 s
    before the first: a pooled connection the service had just closed (Azurite closes
    them after 5 s idle, Azure's front ends later) held a fetch worker for 15-20 s on a
    queue send that succeeds at once when retried. Table clients retry after 0.8 s."""
    return ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=4,
                            random_jitter_range=0.5)


class ResendOnDrop(Retry):
    """Sends a request again, at once and whatever its method, when the connection it went
    out on was dropped before any answer (reset, or closed unanswered); any other error
    is raised as requests' default raises it.

    Why: a pooled connection the service closes for idleness (Azurite after 5 s, Azure's
    front ends later) is replaced by urllib3 when the close has arrived, but a request
    sent as the close crosses it is reset (`ConnectionResetError 104`). The Tables SDK
    never resends a POST or PATCH after that (its retry policy, which a client cannot
    replace, resends only GET, PUT and DELETE), so a `$batch`, an insert or a merge
    failed its run (two Graph bench runs of six). In that race the service did not carry
    the request out; had it ever, the resend meets what a redelivered message meets (a
    conditional write's 412, an insert's 409: docs/guarantees.md). Queue sends retry in
    their SDK too (`_queue_retry`): this resend comes first. A timeout, a refused
    connection and any answer (503, Retry-After) are left to the SDKs' policies."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("total", 2)
        kwargs.setdefault("read", 2)
        for name in ("connect", "status", "other"):
            kwargs.setdefault(name, 0)
        kwargs.setdefault("redirect", False)
        kwargs.setdefault("allowed_methods", None)  # every method
        kwargs.setdefault("status_forcelist", None)  # an answer is the SDK's to retry,
        kwargs.setdefault("respect_retry_after_header", False)  # Retry-After included
        kwargs.setdefault("raise_on_status", False)
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def increment(self, method: str | None = None, url: str | None = None,
                  response: object = None, error: Exception | None = None,
                  _pool: object = None, _stacktrace: object = None) -> Retry:
        if error is not None and not (self.read and dropped(error)):
            raise error
        return super().increment(method, url, response, error,  # type: ignore[arg-type]
                                 _pool, _stacktrace)  # type: ignore[arg-type]


def dropped(error: Exception) -> bool:
    """urllib3's error for a connection reset or closed before the answer's first byte."""
    cause = error.args[-1] if isinstance(error, ProtocolError) and error.args else None
    return isinstance(cause, ConnectionError)  # ConnectionReset (RemoteDisconnected), BrokenPipe


def proxied(environ: Mapping[str, str]) -> bool:
    """Whether a proxy or netrc variable is set, which requests applies per request."""
    return any(name.lower().endswith("_proxy") or name.lower() == "netrc"
               for name in environ)


def ca_bundle(environ: Mapping[str, str]) -> str | bool:
    """The CA bundle requests would take from the environment, else its own (True)."""
    return environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True


def azurite_connection_string(host: str = "127.0.0.1", blob: int = 10000,
                              queue: int = 10001, table: int = 10002) -> str:
    """The well-known development account on Azurite's given ports."""
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{blob}/devstoreaccount1;"
        f"QueueEndpoint=http://{host}:{queue}/devstoreaccount1;"
        f"TableEndpoint=http://{host}:{table}/devstoreaccount1;"
    )


@dataclass(frozen=True)
class StorageConnection:
    """A resolved storage connection; its repr never shows the account key."""

    name: str
    connection_string: str | None = field(default=None, repr=False)
    queue_service_uri: str | None = None
    table_service_uri: str | None = None
    credential_kind: str | None = None
    client_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str) -> StorageConnection:
        conn = (env.get(name) or "").strip()
        if conn:
            if conn.replace(" ", "").lower() == "usedevelopmentstorage=true":
                conn = azurite_connection_string()
            parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
            if "AccountName" not in parts and "QueueEndpoint" not in parts:
                raise SettingsError(name, "is not a storage connection string")
            return cls(name=name, connection_string=conn)
        account = env.get(f"{name}__accountName")
        queue_uri = env.get(f"{name}__queueServiceUri") or (
            account and f"https://{account}.queue.core.windows.net")
        table_uri = env.get(f"{name}__tableServiceUri") or (
            account and f"https://{account}.table.core.windows.net")
        if not queue_uri or not table_uri:
            raise SettingsError(
                name,
                "is not set: give a connection string, or "
                f"{name}__queueServiceUri and {name}__tableServiceUri for a managed identity",
            )
        for uri, suffix in ((queue_uri, "queueServiceUri"), (table_uri, "tableServiceUri")):
            if not uri.startswith("https://"):
                raise SettingsError(f"{name}__{suffix}", "must be an https:// URI")
        return cls(
            name=name,
            queue_service_uri=queue_uri,
            table_service_uri=table_uri,
            credential_kind=env.get(f"{name}__credential"),
            client_id=env.get(f"{name}__clientId"),
        )

    @functools.cached_property
    def _credential(self) -> TokenCredential:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        if (self.credential_kind or "").lower() == "managedidentity":
            return ManagedIdentityCredential(client_id=self.client_id)
        return DefaultAzureCredential(managed_identity_client_id=self.client_id)

    @functools.cached_property
    def _transport(self) -> RequestsTransport:
        """One connection pool for all clients, sized for the worker's sender threads
        (requests' default of 10 makes 32 threads open and drop connections); a request
        whose pooled connection the service dropped is sent again (`ResendOnDrop`).

        The environment is read here, once: requests would scan all of it twice per
        request (~1 ms, a fifth of the worker's CPU for a `$batch` beside its body). Its
        CA bundle applies as requests would apply it; where a proxy or netrc variable is
        set, requests goes on reading the environment per request, as it always does."""
        session = requests.Session()
        session.trust_env = proxied(os.environ)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE,
                              max_retries=ResendOnDrop())
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return RequestsTransport(session=session, session_owner=False,
                                 connection_verify=ca_bundle(os.environ))

    @functools.cached_property
    def _queue_service(self) -> QueueServiceClient:
        if self.connection_string:
            return QueueServiceClient.from_connection_string(
                self.connection_string, transport=self._transport, retry_policy=_queue_retry())
        return QueueServiceClient(self.queue_service_uri, credential=self._credential,
                                  transport=self._transport, retry_policy=_queue_retry())

    @functools.cached_property
    def _table_service(self) -> TableServiceClient:
        # every write is checked against Azure's size limits, which Azurite does not enforce
        if self.connection_string:
            return TableServiceClient.from_connection_string(
                self.connection_string, transport=self._transport,
                raw_request_hook=limits.refuse_oversize)
        return TableServiceClient(self.table_service_uri, credential=self._credential,
                                  transport=self._transport,
                                  raw_request_hook=limits.refuse_oversize)

    def queue_service(self) -> QueueServiceClient:
        """One client per connection: it owns the HTTP connection pool."""
        return self._queue_service

    def table_service(self) -> TableServiceClient:
        return self._table_service

    def queue(self, queue_name: str, *, base64: bool = True) -> QueueClient:
        """A queue client; base64 on the wire by default, as the Functions host expects."""
        policies = (
            {"message_encode_policy": TextBase64EncodePolicy(),
             "message_decode_policy": TextBase64DecodePolicy()}
            if base64 else {}
        )
        return self.queue_service().get_queue_client(queue_name, **policies)
