"""The lean $batch and queue paths with a token credential (identity-based
AzureWebJobsStorage__*), against an Azurite of its own over HTTPS with `--oauth basic`,
which checks a bearer token's audience, issuer and lifetime (not its signature)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import trustme
from azure.core.credentials import AccessToken

from devhost import azurite as azurite_module
from devhost.azurite import Azurite
from shared.storage import batch, tables
from shared.storage.connection import StorageConnection
from shared.storage.queue_sender import QueueSender, QueueSendError

ROOT = Path(__file__).resolve().parents[2]
KEY = "any-key-azurite-does-not-check-signatures"


class FakeIdentity:
    """A TokenCredential whose tokens Azurite's basic OAuth accepts."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iat": now - 60, "nbf": now - 60,
                  "exp": now + 3600, "oid": str(uuid.uuid4()), "tid": str(uuid.uuid4()),
                  "iss": "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/"}
        return AccessToken(jwt.encode(claims, KEY, algorithm="HS256"),
                           now + 3600)


class HttpsAzurite(Azurite):
    def __init__(self, cert: Path, key: Path, **kwargs: object) -> None:
        super().__init__(ROOT, **kwargs)  # type: ignore[arg-type]
        self.cert, self.key = cert, key

    def command(self) -> list[str]:
        return [*super().command(), "--oauth", "basic", "--cert", str(self.cert),
                "--key", str(self.key)]


@pytest.fixture(scope="module")
def oauth_storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageConnection]:
    folder = tmp_path_factory.mktemp("azurite-oauth")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(folder / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    patch = pytest.MonkeyPatch()
    patch.setattr(azurite_module, "_LISTENING", re.compile(
        r"Azurite (Blob|Queue|Table) service is successfully listening at https?://[^:]+:(\d+)"))
    patch.setenv("REQUESTS_CA_BUNDLE", str(folder / "ca.pem"))  # the SDK's requests
    patch.setenv("SSL_CERT_FILE", str(folder / "ca.pem"))  # the queue sender's ssl context
    server = HttpsAzurite(folder / "cert.pem", folder / "key.pem",
                          log_path=folder / "azurite.log").start()
    try:
        env = {"Storage__queueServiceUri":
               f"https://127.0.0.1:{server.ports['Queue']}/devstoreaccount1",
               "Storage__tableServiceUri":
               f"https://127.0.0.1:{server.ports['Table']}/devstoreaccount1"}
        storage = StorageConnection.from_env(env, "Storage")
        storage.__dict__["_credential"] = FakeIdentity()  # in place of the managed identity
        yield storage
    finally:
        server.stop()
        patch.undo()


def test_transactions_with_a_token_credential(oauth_storage):
    table = tables.table(oauth_storage, "TokenAuth")
    pk = uuid.uuid4().hex
    results = batch.submit_transaction(table, [
        ("create", {"PartitionKey": pk, "RowKey": f"r{i}", "Body": b"\x00" * 100})
        for i in range(10)])
    assert [r["etag"] for r in results] == [
        table.get_entity(pk, f"r{i}").metadata["etag"] for i in range(10)]
    assert ("https://storage.azure.com/.default",) in oauth_storage._credential.scopes


def test_queue_sender_with_a_token_credential(oauth_storage):
    name = f"token-{uuid.uuid4().hex[:8]}"
    client = tables.queue(oauth_storage, name)
    sender = QueueSender(oauth_storage, name)
    sender.send_message('{"hello": "token"}')
    (message,) = list(client.receive_messages())
    assert message.content == '{"hello": "token"}'


def test_a_token_azurite_refuses_is_an_error(oauth_storage, monkeypatch):
    name = f"token-{uuid.uuid4().hex[:8]}"
    tables.queue(oauth_storage, name)
    sender = QueueSender(oauth_storage, name)
    identity = FakeIdentity()

    def wrong_audience(*scopes: str, **kwargs: object) -> AccessToken:
        token = identity.get_token(*scopes)
        claims = jwt.decode(token.token, options={"verify_signature": False})
        return AccessToken(jwt.encode({**claims, "aud": "https://example.com"}, "k" * 32,
                                      algorithm="HS256"), token.expires_on)

    monkeypatch.setattr(sender, "_token_credential", type("C", (), {
        "get_token": staticmethod(wrong_audience)})())
    with pytest.raises(QueueSendError) as caught:
        sender.send_message("x")
    assert caught.value.status in (401, 403)
