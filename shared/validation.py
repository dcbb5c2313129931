"""The one validation layer of every HTTP API: bodies are size- and depth-limited JSON
checked by a pydantic model, query strings by a model too, and every refusal names its
field, so no input reaches a 500 and nothing is stored for a refused request."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, TypeVar

import orjson
import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from shared.addresses import parse_address

MAX_BODY = 64 * 1024  # bytes of a request body; larger is a 413 naming `body`
MAX_DEPTH = 32  # nesting of a JSON body; none of ours nests past 3
MAX_PARAM = 2048  # characters of one query parameter

M = TypeVar("M", bound=BaseModel)


class ValidationError(ValueError):
    """Bad input; `errors` names each field and what is wrong with it."""

    def __init__(self, errors: list[dict[str, str]], status: int = 400) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors, self.status = errors, status


def _body_error(message: str, status: int = 400) -> ValidationError:
    return ValidationError([{"field": "body", "message": message}], status)


def _unicode(value: str) -> str:
    """A lone surrogate cannot be encoded as UTF-8: stored, it breaks every reader."""
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError("contains a lone surrogate (not Unicode text)")
    return value


def _printable(value: str) -> str:
    if any(c < " " or "\x7f" <= c <= "\x9f" for c in _unicode(value)):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _address(value: str) -> str:
    return parse_address(_unicode(value))


# string types for request models; every str field of a model uses one of them
Text = Annotated[str, AfterValidator(_unicode)]
Address = Annotated[str, AfterValidator(_address),
                    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254})]


def name(max_length: int) -> Any:
    """A display name: 1 to max_length printable characters, trimmed."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=max_length),
                     AfterValidator(_printable)]


Name = name(200)
# a short value chosen by the MSSP (a device group, a category): printable
Label = Annotated[str, StringConstraints(min_length=1, max_length=200),
                  AfterValidator(_printable)]


class Strict(BaseModel):
    """A request body: strict JSON types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoBody(Strict):
    """An operation that takes no body: nothing, or `{}`."""


class Reply(BaseModel):
    """A JSON response body. The handler writes `model_dump(mode="json")` of one and the
    OpenAPI document's schema is generated from the same class (shared/web/openapi.py),
    so the document is true by construction. A field that is sometimes left out is
    declared with `absent()` (a default of None, omitted when None)."""

    model_config = ConfigDict(frozen=True)


def absent(description: str = "") -> Any:
    """A Reply field left out of the answer when it is None (not required in the schema)."""
    return Field(None, exclude_if=lambda value: value is None,
                 **({"description": description} if description else {}))


# a time in a response, written as Python's isoformat() (`+00:00`, as before the models)
Timestamp = Annotated[datetime, PlainSerializer(lambda value: value.isoformat(),
                                                return_type=str, when_used="json"),
                      WithJsonSchema({"type": "string", "format": "date-time"})]


class FieldError(Reply):
    field: str = Field(description="a dotted path: `recipients.0`, `body` for the body "
                                   "as a whole")
    message: str


class ErrorBody(Reply):
    """Every 4xx of the JSON APIs: what went wrong, and each field that is wrong."""

    model_config = ConfigDict(title="Error")

    error: str
    errors: list[FieldError]

    @classmethod
    def one(cls, error: str, field: str, message: str) -> ErrorBody:
        return cls(error=error, errors=[FieldError(field=field, message=message)])


def decode_json(raw: bytes | None) -> Any:
    """The JSON of a request body, or a ValidationError naming `body` (empty: None)."""
    raw = raw or b""
    if len(raw) > MAX_BODY:
        raise _body_error(f"is larger than {MAX_BODY} bytes", 413)
    if not raw.strip():
        return None
    try:
        data = orjson.loads(raw)  # refuses NaN, lone surrogates, bad UTF-8, depth > 1024
    except orjson.JSONDecodeError as exc:
        raise _body_error(f"is not valid JSON ({exc.msg})") from None
    stack = [(data, 1)]
    while stack:  # iterative: a deep body never reaches the recursion limit
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise _body_error(f"nests deeper than {MAX_DEPTH} levels")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return data


def _field(loc: tuple[int | str, ...], prefix: str) -> str:
    return ".".join(str(part) for part in loc) or prefix


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return "must be a JSON object"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def check(model: type[M], data: Any, prefix: str = "body") -> M:
    """`data` as `model`, or a ValidationError naming every bad field (dotted path)."""
    try:
        return model.model_validate({} if data is None else data)
    except pydantic.ValidationError as exc:
        errors = [{"field": _field(e["loc"], prefix), "message": _message(e)}
                  for e in exc.errors(include_url=False)]
        raise ValidationError(errors) from None


def body(model: type[M], raw: bytes | None) -> M:
    """A request body as `model`: size, JSON, depth, then the model."""
    return check(model, decode_json(raw))


def params(model: type[M], given: Mapping[str, str], ignore: tuple[str, ...] = ("code",)
           ) -> M:
    """Query parameters as `model` (string fields); `code` is the host's key."""
    values = {k: v for k, v in given.items() if k not in ignore}
    errors = [{"field": k, "message": f"is longer than {MAX_PARAM} characters"}
              for k, v in values.items() if len(v) > MAX_PARAM]
    if errors:
        raise ValidationError(errors)
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        raise ValidationError([
            {"field": _field(e["loc"], "query"),
             "message": "is not a known parameter" if e["type"] == "extra_forbidden"
             else _message(e)} for e in exc.errors(include_url=False)]) from None
