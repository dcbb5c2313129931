"""The fast paths added for the benchmarks give exactly what the slow paths gave."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum

import orjson
import pytest
from azure.core import MatchConditions
from azure.data.tables import EdmType, UpdateMode
from azure.data.tables._serialize import _add_entity_properties

from shared import timefmt
from shared.storage import batch, limits
from shared.storage.keys import _needs_escape, encode_key
from shared.storage.queue_sender import encode


def test_key_fast_path_matches_the_character_loop():
    for code in range(0x3000):
        value = f"a{chr(code)}b"
        slow = "".join(f"%{ord(c):02X}" if _needs_escape(c) else c for c in value)
        assert encode_key(value) == slow
    with pytest.raises(ValueError):
        encode_key("")
    with pytest.raises(ValueError):
        encode_key("x" * 1025)


def test_to_datetime_as_before():
    for text in ("2021-01-26T21:33:57.7220239Z", "2021-01-26T21:33:57Z",
                 "2021-01-26T21:33:57.72+01:00", "2024-02-29 00:00:00.1-05:30"):
        n = timefmt.normalize(text)
        before = datetime.strptime(n[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=UTC, microsecond=int(n[20:26]))
        assert timefmt.to_datetime(text) == before


def test_normalized_times_pass_through_as_the_full_parse_gives_them():
    for text in ("2021-01-26T21:33:57.7220239Z", "1999-12-31T23:59:59.9999999Z",
                 "2024-02-29T00:00:00.0000000Z"):
        assert timefmt.normalize(text) == timefmt.normalize(f" {text} ") == text
    with pytest.raises(ValueError):  # digits of another script are not a Defender time
        timefmt.normalize("２０２１-01-26T21:33:57.7220239Z")


class Colour(StrEnum):
    RED = "red"


def test_entity_json_matches_the_sdk():
    entity = {"PartitionKey": "p", "RowKey": "r", "s": "text ✓", "b": b"\x00\xff", "t": True,
              "f": False, "i": 2 ** 31 - 1, "neg": -(2 ** 31), "x": 1.5,
              "nan": float("nan"), "when": datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=UTC),
              "g": uuid.UUID(int=1), "e": Colour.RED, "typed": (5, EdmType.INT64),
              "none": None, "empty": "", "bytes0": b"",
              "whole": datetime(2026, 1, 1, tzinfo=UTC), "old": datetime(999, 1, 1, tzinfo=UTC),
              "elsewhere": datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))}
    ours, sdk = batch._properties(entity), _add_entity_properties(entity)
    assert ours.keys() == sdk.keys()
    assert orjson.loads(orjson.dumps(ours)) == json.loads(json.dumps(sdk))
    for convert in (batch._properties, _add_entity_properties):
        with pytest.raises(TypeError):  # an int beyond Int32 must be typed, as in the SDK
            convert({"big": 2 ** 31})


def test_parts_carry_method_url_and_if_match():
    base = "http://h:1/acct"
    etag = 'W/"datetime\'2026\'"'
    _, body = batch.encode(base, "T", [
        ("create", {"PartitionKey": "p'q", "RowKey": "a b"}),
        ("upsert", {"PartitionKey": "p'q", "RowKey": "c/d"}, {"mode": UpdateMode.REPLACE}),
        ("upsert", {"PartitionKey": "p'q", "RowKey": "e"}),
        ("update", {"PartitionKey": "p'q", "RowKey": "f"},
         {"etag": etag, "match_condition": MatchConditions.IfNotModified}),
        ("update", {"PartitionKey": "p'q", "RowKey": "g"}, {"mode": UpdateMode.REPLACE}),
        ("delete", {"PartitionKey": "p'q", "RowKey": "h"}),
    ])
    text = body.decode()
    assert "POST http://h:1/acct/T HTTP/1.1" in text
    assert "PUT http://h:1/acct/T(PartitionKey='p%27%27q',RowKey='c%2Fd') HTTP/1.1" in text
    assert "MERGE http://h:1/acct/T(PartitionKey='p%27%27q',RowKey='e') HTTP/1.1" in text
    assert f"If-Match: {etag}" in text and text.count("If-Match: *") == 2
    assert "DELETE http://h:1/acct/T(PartitionKey='p%27%27q',RowKey='h') HTTP/1.1" in text
    with pytest.raises(ValueError):
        batch.encode(base, "T", [("update", {"PartitionKey": "p", "RowKey": "x"},
                                  {"match_condition": MatchConditions.IfNotModified})])


def test_queue_body_is_base64_text_in_the_service_xml():
    body = encode('{"tenant": "ü"}').decode()
    text = body.split("<MessageText>")[1].split("</MessageText>")[0]
    assert base64.b64decode(text).decode() == '{"tenant": "ü"}'


ODD = ("\n\x0b\x0c\r\x85\u2028\u2029" + "".join(map(chr, range(0x20))) + "\x7f"
       + "".join(map(chr, range(0x80, 0xa0))) + "\ufeff\u202e\U0001f600 ü ✓ \" \\ </>")


def test_entity_json_is_ascii_escaped_as_the_sdk_sends_it():
    """azure-core's json.dumps escapes every non-ASCII character; Azurite loses the
    properties after a raw U+2028, so the lean body must be byte for byte the same."""
    entity = {"PartitionKey": "p", "RowKey": "r", "Title": ODD, "Device": "pc\u2028x",
              "Plain": "ascii only"}
    ours = batch.ascii_json(orjson.dumps(batch._properties(entity)))
    sdk = json.dumps(_add_entity_properties(entity), separators=(",", ":")).encode()
    assert ours == sdk
    assert batch.ascii_json(b'{"a":"plain"}') == b'{"a":"plain"}'
    _, body = batch.encode("http://h:1/acct", "T", [("upsert", entity)])
    assert body.isascii() and b"\\u2028" in body


def test_wire_size_bounds_the_escaped_json():
    for text in (ODD, "\u2028" * 1000, "\U0001f600" * 100, "ascii", "\x00\x1f", "ü" * 50):
        entity = {"PartitionKey": "p", "RowKey": "r", "Text": text}
        body = batch.ascii_json(orjson.dumps(batch._properties(entity)))
        assert len(body) <= limits.wire_size(entity), text[:10]


class _SdkTable:
    """What batch.submit_transaction reads of a TableClient; `_client` (the lean path's
    pipeline) is absent, so only the SDK's own call can answer."""

    scheme, _primary_hostname, table_name, api_version = "http", "h:1/acct", "T", "2019-02-02"

    def __init__(self) -> None:
        self.sent: list = []

    def submit_transaction(self, operations):
        self.sent.append(list(operations))
        return [{"etag": f"e{n}", "date": "d"} for n, _ in enumerate(operations)]


def test_the_switch_sends_transactions_through_the_sdk_after_the_same_checks(monkeypatch):
    monkeypatch.setenv("STORAGE_FAST_PATHS", "false")
    table = _SdkTable()
    ops = [("upsert", {"PartitionKey": "p", "RowKey": str(n), "Text": "✓"}) for n in range(3)]
    assert batch.submit_transaction(table, ops) == [
        {"etag": f"e{n}", "date": "d"} for n in range(3)]
    assert table.sent == [ops]
    assert batch.submit_transaction(table, []) == [] and len(table.sent) == 1
    big = {"PartitionKey": "p", "RowKey": "big", "Blob": b"x" * (limits.MAX_ENTITY_BYTES + 1)}
    with pytest.raises(limits.TooLarge):  # what Azure would refuse is refused on both paths
        batch.submit_transaction(table, [("upsert", big)])
    assert len(table.sent) == 1
    monkeypatch.setenv("STORAGE_FAST_PATHS", "true")
    with pytest.raises(AttributeError):  # the lean path uses the client's pipeline instead
        batch.submit_transaction(table, ops)


def test_the_switch_gives_the_fanout_the_sdk_queue_client(monkeypatch):
    from shared.storage.connection import StorageConnection, azurite_connection_string
    from shared.storage.queue_sender import QueueSender, sender

    storage = StorageConnection.from_env({"S": azurite_connection_string()}, "S")
    assert isinstance(sender(storage, "q"), QueueSender)  # the default
    monkeypatch.setenv("STORAGE_FAST_PATHS", "false")
    client = sender(storage, "q")
    assert not isinstance(client, QueueSender) and client.queue_name == "q"
    assert type(client._message_encode_policy).__name__ == "TextBase64EncodePolicy"
    monkeypatch.setenv("STORAGE_FAST_PATHS", "maybe")
    with pytest.raises(ValueError, match="STORAGE_FAST_PATHS"):
        sender(storage, "q")
