"""Helpers shared by the HTTP adapters: JSON bodies in and out."""

from __future__ import annotations

import json
from collections.abc import Sequence

import azure.functions as func
from pydantic import BaseModel

from shared.validation import ErrorBody, ValidationError


def data_response(body: str, mimetype: str, status: int = 200,
                  headers: dict[str, str] | None = None) -> func.HttpResponse:
    """An API answer that browsers will not sniff into something else, nor cache."""
    return func.HttpResponse(body, status_code=status, mimetype=mimetype,
                             headers={"X-Content-Type-Options": "nosniff",
                                      "Cache-Control": "no-store", **(headers or {})})


def json_response(body: BaseModel | Sequence[BaseModel], status: int = 200,
                  headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON answer written from its response model(s) only: the shape the OpenAPI
    document gives, as it is generated from the same models."""
    data = (body.model_dump(mode="json") if isinstance(body, BaseModel)
            else [one.model_dump(mode="json") for one in body])
    return data_response(json.dumps(data, separators=(",", ":"), default=str),
                         "application/json", status, headers)


def invalid(exc: ValidationError, error: str = "invalid request") -> func.HttpResponse:
    """The 4xx of refused input: JSON naming each bad field."""
    return json_response(ErrorBody.model_validate({"error": error, "errors": exc.errors}),
                         exc.status)


def refused(status: int, error: str, field: str, message: str) -> func.HttpResponse:
    """A 4xx naming one field: no such tenant (404), not in this status (409), ..."""
    return json_response(ErrorBody.one(error, field, message), status)
