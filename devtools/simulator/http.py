"""Response helpers in Entra's and Defender's own shapes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

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
