"""Helpers shared by the HTTP adapters: JSON bodies in and out."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> func.HttpResponse:
    """A JSON response that browsers will not sniff into something else."""
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":"), default=str),
        status_code=status,
        mimetype="application/json",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
                 **(headers or {})},
    )
