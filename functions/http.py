"""Helpers shared by the HTTP adapters: JSON bodies in and out."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from shared.validation import ValidationError


def data_response(body: str, mimetype: str, status: int = 200,
                  headers: dict[str, str] | None = None) -> func.HttpResponse:
    """An API answer that browsers will not sniff into something else, nor cache."""
    return func.HttpResponse(body, status_code=status, mimetype=mimetype,
                             headers={"X-Content-Type-Options": "nosniff",
                                      "Cache-Control": "no-store", **(headers or {})})


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> func.HttpResponse:
    return data_response(json.dumps(body, separators=(",", ":"), default=str),
                         "application/json", status, headers)


def invalid(exc: ValidationError, error: str = "invalid request") -> func.HttpResponse:
    """The 4xx of refused input: JSON naming each bad field."""
    return json_response({"error": error, "errors": exc.errors}, exc.status)
