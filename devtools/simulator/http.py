"""Response helpers in Entra's, Defender's and Graph's own shapes."""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from werkzeug.wrappers import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type="application/json; charset=utf-8")


def entra_error(status: int, error: str, code: int, message: str) -> Response:
    """Entra's token error body: error, error_description with AADSTS code, ids, timestamp."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return json_response({
        "error": error,
        "error_description": f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: "
                             f"{correlation} Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }, status)


def defender_error(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """Defender's error body: {"error": {"code", "message", "target"}}."""
    return json_response({"error": {"code": code, "message": message,
                                    "target": str(uuid.uuid4())}}, status, headers)


def graph_error(status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> Response:
    """Graph's error body: {"error": {"code", "message", "innerError"}}."""
    return json_response({"error": {"code": code, "message": message, "innerError": {
        "request-id": str(uuid.uuid4()), "date": datetime.now(UTC).isoformat()}}},
        status, headers)


def streamed(head: dict[str, Any], page: list[dict[str, Any]], cut_after: int | None = None,
             per_write: int = 100) -> Iterator[bytes]:
    """A page as chunked JSON written while it is serialized (`head`'s fields, then
    `value`), as a large API answer arrives: the client can work on the first items before
    the last are sent. With `cut_after`, the body breaks off after that many items (a
    connection that died)."""
    yield orjson.dumps(head)[:-1] + b',"value":['
    end = len(page) if cut_after is None else min(cut_after, len(page))
    for start in range(0, end, per_write):  # orjson: the simulator's CPU is not Defender's
        data = b",".join(orjson.dumps(a) for a in page[start:min(start + per_write, end)])
        yield b"," + data if start else data
    if end == len(page):
        yield b"]}"


def gzipped(parts: Iterator[bytes]) -> Iterator[bytes]:
    """A gzip stream of `parts`, each part flushed as it comes (as Azure's front ends do)."""
    gzip = zlib.compressobj(1, zlib.DEFLATED, 31)
    for part in parts:
        yield gzip.compress(part) + gzip.flush(zlib.Z_SYNC_FLUSH)
    yield gzip.flush()
