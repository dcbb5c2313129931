"""Table transactions ($batch) without azure-core's multipart machinery.

Why hand-written: profiling the ingest benchmark showed ~90% of the time of
`TableClient.submit_transaction` in azure-core's multipart build and parse (every
sub-request goes through the `email` package); it was the worker's measured bottleneck.
Here the multipart body is written as plain text and the response parts are split on
their boundary. The rest stays the SDK's: the entity encoding (`_add_entity_properties`,
its common types inlined, so rows read back exactly as the SDK writes them), its JSON
escaping (ASCII only, as azure-core's `json.dumps`: Azurite drops every property after a
raw U+2028 or U+2029, so one character in an alert title stopped a tenant's fetches), the
client's pipeline that signs and retries the request (shared key, SAS or token
credential), and the exceptions: a failed sub-operation raises `TableTransactionError`
with its status, error code and index. Same operation tuples in, same `[{"etag": ...}]`
out. Pinned to azure-data-tables 12.7 (private imports below); tests/integration/test_batch.py and
test_storage_token_auth.py check it against Azurite. `STORAGE_FAST_PATHS=false`
(shared/storage/fast_paths.py) sends every transaction through the SDK's own
`TableClient.submit_transaction` instead, after the same size checks.
"""

from __future__ import annotations

import base64
import codecs
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.data.tables import (
    RequestTooLargeError,
    TableClient,
    TableTransactionError,
    UpdateMode,
)
from azure.data.tables._error import _decode_error  # the SDK's own error decoding
from azure.data.tables._serialize import _add_entity_properties  # the SDK's own EDM encoding

from shared import codec
from shared.storage import fast_paths, limits

_BOUNDARY = re.compile(rb"boundary=(changesetresponse_[^\s;]+)")
_BLANK = re.compile(rb"\r?\n\r?\n")
_ETAG = re.compile(rb"^etag:[ \t]*(.+?)[ \t]*\r?$", re.I | re.M)
Operation = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]


def _key(value: Any) -> str:
    return quote(str(value).replace("'", "''"), safe="")


def _if_match(entity: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    condition = options.get("match_condition") or MatchConditions.Unconditionally
    etag = options.get("etag")
    if condition == MatchConditions.IfNotModified and not etag:  # a TableEntity read before
        etag = (getattr(entity, "metadata", None) or {}).get("etag")
    if condition == MatchConditions.IfNotModified:
        if not etag:
            raise ValueError("IfNotModified must be specified with etag.")
        return str(etag)
    if condition != MatchConditions.Unconditionally:
        raise ValueError(f"Unsupported match condition: {condition}")
    if etag:
        raise ValueError("Etag is not supported for an Unconditional operation.")
    return "*"


def _properties(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK's JSON for an entity, with the common types (str, bytes, bool, int32, UTC
    datetime) done inline: the SDK's generic `_add_entity_properties` was ~45% of a
    transaction's Python time in the ingest benchmark, half of it formatting datetimes.
    Every other type goes through the SDK's conversion."""
    out: dict[str, Any] = {}
    for name, value in entity.items():
        kind = type(value)
        if kind is str:  # non-ASCII escaped by the stdlib's C encoder, as the SDK does
            out[name] = value if value.isascii() else orjson.Fragment(json.dumps(value))
            out[name + "@odata.type"] = "Edm.String"
        elif kind is bytes:
            out[name] = base64.b64encode(value).decode("ascii")
            out[name + "@odata.type"] = "Edm.Binary"
        elif kind is bool or (kind is int and -(2 ** 31) <= value < 2 ** 31):
            out[name] = value
        elif kind is datetime and value.tzinfo is UTC and value.year >= 1000:
            # the SDK's strftime("%Y-%m-%dT%H:%M:%S.%fZ") of the UTC time, 3x faster
            out[name] = value.isoformat(timespec="microseconds")[:-6] + "Z"
            out[name + "@odata.type"] = "Edm.DateTime"
        elif value is not None:
            out.update(_add_entity_properties({name: value}))
    return out


def _json_escape(error: UnicodeEncodeError) -> tuple[str, int]:
    """A run of non-ASCII characters as JSON escapes (surrogate pairs beyond the BMP)."""
    return json.dumps(error.object[error.start:error.end])[1:-1], error.end


codecs.register_error("mssp-json-escape", _json_escape)


def ascii_json(body: bytes) -> bytes:
    """orjson's UTF-8 JSON as the SDK sends it (json.dumps' ensure_ascii): every non-ASCII
    character, and DEL, as \\uXXXX. `_properties` escapes plain strings already (with the
    stdlib's C encoder: 1-2 us a row, where escaping the body after cost ~14); this catches
    what the SDK's own conversion returns. Outside strings JSON is ASCII, so only string
    contents change; an ASCII body costs two quick scans."""
    if not body.isascii():
        body = body.decode().encode("ascii", "mssp-json-escape")
    return body.replace(b"\x7f", b"\\u007f") if b"\x7f" in body else body


def _part(base: str, table: str, operation: Operation) -> bytes:
    kind = operation[0].lower()
    entity = operation[1]
    options: Mapping[str, Any] = operation[2] if len(operation) == 3 else {}  # type: ignore[misc]
    where = f"{base}/{table}(PartitionKey='{_key(entity['PartitionKey'])}'," \
            f"RowKey='{_key(entity['RowKey'])}')"
    headers = ["Accept: application/json;odata=nometadata", "DataServiceVersion: 3.0"]
    body = b""
    if kind == "create":
        method, where = "POST", f"{base}/{table}"
        headers.append("Prefer: return-no-content")
    elif kind in ("update", "upsert"):
        mode = options.get("mode", UpdateMode.MERGE)
        if mode not in (UpdateMode.MERGE, UpdateMode.REPLACE):
            raise ValueError(f"Mode type '{mode}' is not supported.")
        method = "PUT" if mode == UpdateMode.REPLACE else "MERGE"
        if kind == "update":
            headers.append(f"If-Match: {_if_match(entity, options)}")
    elif kind == "delete":
        method = "DELETE"
        headers.append(f"If-Match: {_if_match(entity, options)}")
    else:
        raise ValueError(f"Unrecognized operation: {operation[0]}")
    if method != "DELETE":
        body = ascii_json(codec.dumps(_properties(entity)))  # bytes throughout
        headers.append("Content-Type: application/json")
    head = "\r\n".join(headers)
    return (f"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
            f"{method} {where} HTTP/1.1\r\n{head}\r\nContent-Length: "
            f"{len(body)}\r\n\r\n").encode() + body


def encode(base: str, table: str, operations: list[Operation]) -> tuple[str, bytes]:
    """(batch boundary, body) of one changeset holding `operations`, in order."""
    partitions = {op[1]["PartitionKey"] for op in operations}
    if len(partitions) > 1:
        raise ValueError("Partition Keys in the batch must all be the same.")
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    start = f"--{changeset}\r\n".encode()
    head = f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
    tail = f"--{changeset}--\r\n\r\n--{batch}--\r\n"
    parts = b"".join(start + _part(base, table, op) + b"\r\n" for op in operations)
    return batch, head.encode() + parts + tail.encode()


def decode(content: bytes) -> list[tuple[int, bytes, bytes]]:
    """(status, headers, body) of each response part, in order.

    The parts sit in the changeset; a request the service refused as a whole is answered
    with one part directly in the batch response.
    """
    changeset = _BOUNDARY.search(content)
    boundary = b"--" + changeset.group(1) if changeset else content.split(b"\n", 1)[0].strip()
    parts = []
    for segment in content.split(boundary)[1:]:
        start = segment.find(b"HTTP/1.1 ")
        if start < 0:
            continue
        message = _BLANK.split(segment[start:], 1)
        head, body = message[0], message[1].strip() if len(message) > 1 else b""
        parts.append((int(head[9:12]), head, body))
    return parts


def _part_error(status: int, body: bytes) -> TableTransactionError:
    """The SDK's error for a failed sub-operation: code, message '<index>:...', index."""
    code, message = None, body.decode("utf-8", "replace")
    try:
        error = json.loads(body).get("odata.error") or {}
        code = error.get("code")
        message = (error.get("message") or {}).get("value") or message
    except (ValueError, AttributeError):
        pass
    kind = RequestTooLargeError if status == 413 else TableTransactionError
    exc = kind(message=f"{message}\nErrorCode:{code}" if code else message)
    exc.status_code, exc.error_code = status, code
    exc.index = exc._extract_index()  # the SDK's parse of '<index>:'
    return exc


def submit_transaction(client: TableClient, operations: Iterable[Operation]
                       ) -> list[dict[str, Any]]:
    """All of `operations` (one partition, at most 100) or none; one `{"etag": ...}` each.

    Raises limits.TooLarge, before sending, for what Azure would refuse for its size
    (Azurite would take it). Raises TableTransactionError (status_code 412 for a failed
    If-Match, 409 for a create of an existing row, 404 for a missing one) and changes
    nothing when any operation fails.
    """
    ops = list(operations)
    if not ops:
        return []
    base = f"{client.scheme}://{client._primary_hostname}"
    boundary, body = encode(base, client.table_name, ops)
    limits.check_transaction((op[1] for op in ops if op[0].lower() != "delete"), len(ops),
                             len(body))  # what Azure would refuse, refused here too
    if not fast_paths.enabled():  # the SDK's own path: same rows, same errors
        return [dict(result) for result in client.submit_transaction(ops)]
    request = HttpRequest("POST", f"{base}/$batch", content=body, headers={
        "x-ms-version": client.api_version, "DataServiceVersion": "3.0",
        "MaxDataServiceVersion": "3.0;NetFx", "Accept": "application/json",
        "Content-Type": f"multipart/mixed; boundary={boundary}"})
    response = client._client.send_request(request, stream=True)  # its pipeline
    content = response.read()
    if response.status_code == 413:
        raise _decode_error(response, error_message="The transaction request was too large",
                            error_type=RequestTooLargeError)
    if response.status_code != 202:
        raise _decode_error(response)
    parts = decode(content)
    for status, _, part_body in parts:
        if not 200 <= status < 300:
            raise _part_error(status, part_body)
    if len(parts) != len(ops):
        raise HttpResponseError(message=f"$batch answered {len(parts)} parts for {len(ops)} "
                                "operations", response=response)
    results = []
    for _, headers, _ in parts:
        etag = _ETAG.search(headers)
        results.append({"etag": etag.group(1).decode()} if etag else {})
    return results
