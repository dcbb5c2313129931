"""Azure Table storage's size limits, checked before every transaction is sent.

Azurite does not enforce them, so without this check a write that Azure refuses (413, or
EntityTooLarge / PropertyValueTooLarge) would pass every test here and fail only in
production, where a refused commit would stall a tenant for good. Sizes are counted as
Azure counts them ("Understanding the Table service data model"): an entity is 4 bytes,
2 per key character, and per property 8 bytes, 2 per name character and its value
(strings 2 per UTF-16 unit + 4, binary its bytes + 4, fixed sizes otherwise). A
transaction holds at most 100 operations on one partition in a request body of at most
4 MiB.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

MAX_ENTITY_BYTES = 1024 * 1024
MAX_VALUE_BYTES = 64 * 1024  # one string (UTF-16) or binary property
MAX_STRING_UNITS = 32_000  # UTF-16 units a string property is clipped to (of 32,768)
MAX_PROPERTIES = 252  # besides PartitionKey, RowKey and Timestamp
MAX_TRANSACTION_OPS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024  # the whole $batch request body
MAX_TRANSACTION_WIRE = 3_500_000  # what packing aims at, leaving room for the framing
KEYS = ("PartitionKey", "RowKey")
_ESCAPED = re.compile(r"[^\x20-\x7e]")  # in a request each is 6 bytes (\uXXXX) or fewer


class TooLarge(ValueError):
    """A write Azure would refuse for its size; raised before anything is sent."""


def _utf16_units(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _value(value: Any) -> tuple[int, int]:
    """(bytes in Azure's count, bytes of the string or binary data itself, else 0)."""
    kind = type(value)
    if kind is str:
        data = 2 * (len(value) if value.isascii() else _utf16_units(value))
        return data + 4, data
    if kind is bytes:
        return len(value) + 4, len(value)
    if kind is bool:
        return 1, 0
    if kind is int:
        return (4 if -(2 ** 31) <= value < 2 ** 31 else 8), 0
    value = getattr(value, "value", value)  # EntityProperty, or a subclass of the above
    if isinstance(value, str):
        return _value(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _value(bytes(value))
    if isinstance(value, (bool, int)):
        return _value(int(value) if not isinstance(value, bool) else bool(value))
    return (16, 0) if isinstance(value, uuid.UUID) else (8, 0)  # Guid; double, DateTime


def _scan(entity: Mapping[str, Any], check: bool) -> int:
    """Azure's size of the entity; with `check`, raises TooLarge for a value or a
    property count over the limits. One pass, strings and bytes inline: this runs for
    every row written."""
    size, count = 4, 0
    for name, value in entity.items():
        kind = type(value)
        if name in KEYS:
            text = value if kind is str else str(value)
            size += 2 * (len(text) if text.isascii() else _utf16_units(text))
            continue
        if kind is str:
            data = 2 * (len(value) if value.isascii() else _utf16_units(value))
            size += 12 + 2 * len(name) + data
        elif kind is bytes:
            data = len(value)
            size += 12 + 2 * len(name) + data
        elif value is None:
            continue
        else:
            total, data = _value(value)
            size += 8 + 2 * len(name) + total
        count += 1
        if check and data > MAX_VALUE_BYTES:
            raise TooLarge(f"property {name} of entity {entity.get('RowKey')!r} is "
                           f"{data} bytes (Azure allows {MAX_VALUE_BYTES})")
    if check and count > MAX_PROPERTIES:
        raise TooLarge(f"entity {entity.get('RowKey')!r} has {count} properties (Azure "
                       f"allows {MAX_PROPERTIES})")
    return size


def entity_size(entity: Mapping[str, Any]) -> int:
    return _scan(entity, check=False)


class Checked(dict[str, Any]):
    """An entity checked against the limits as it was built, by a builder that keeps
    within them what it adds after (`alert_rows` checks a row's strings, then adds body
    chunks only within the room they leave). `check_transaction` does not count it again:
    for alert rows that second pass was ~5% of the worker's CPU."""


def check_entity(entity: Mapping[str, Any]) -> int:
    """Azure's size of the entity; raises TooLarge for what Azure would refuse."""
    size = _scan(entity, check=True)
    if size > MAX_ENTITY_BYTES:
        raise TooLarge(f"entity {entity.get('RowKey')!r} is {size} bytes (Azure allows "
                       f"{MAX_ENTITY_BYTES})")
    return size


def clip_text(text: str, units: int = MAX_STRING_UNITS) -> str:
    """The longest prefix of `text` within `units` UTF-16 units (a string property holds
    32K of them; a character beyond the BMP takes two), never half a surrogate pair."""
    if len(text) <= units // 2 or (len(text) <= units and text.isascii()):
        return text
    data = text.encode("utf-16-le")[:2 * units]
    if len(data) >= 2 and 0xD8 <= data[-1] <= 0xDB:  # a high surrogate without its pair
        data = data[:-2]
    return data.decode("utf-16-le")


def _from_json(body: Mapping[str, Any]) -> dict[str, Any]:
    """An entity from its request JSON, each value of a Python type of the same size."""
    entity: dict[str, Any] = {}
    for name, value in body.items():
        if "@odata" in name:
            continue
        kind = body.get(f"{name}@odata.type")
        if kind == "Edm.Binary" and isinstance(value, str):
            value = bytes(len(value) * 3 // 4 - value[-2:].count("="))
        elif kind in ("Edm.Int64", "Edm.Double", "Edm.DateTime"):
            value = 2 ** 40
        elif kind == "Edm.Guid":
            value = uuid.UUID(int=0)
        entity[name] = value
    return entity


def refuse_oversize(request: Any) -> None:
    """The `raw_request_hook` of every Table client: a one-entity write (insert, update,
    merge, upsert) that Azure would refuse is refused before it is sent. `$batch` bodies
    are multipart and checked in batch.py."""
    http = request.http_request
    if http.method not in ("POST", "PUT", "PATCH", "MERGE"):
        return
    if not str(http.headers.get("Content-Type", "")).startswith("application/json"):
        return
    try:
        body = json.loads(getattr(http, "content", None) or b"null")
    except ValueError:
        return
    if isinstance(body, dict):
        check_entity(_from_json(body))


def check_transaction(entities: Iterable[Mapping[str, Any]], count: int,
                      body_bytes: int) -> None:
    if count > MAX_TRANSACTION_OPS:
        raise TooLarge(f"a transaction holds at most {MAX_TRANSACTION_OPS} operations, "
                       f"not {count}")
    if body_bytes > MAX_TRANSACTION_BYTES:
        raise TooLarge(f"a transaction body is at most {MAX_TRANSACTION_BYTES} bytes, "
                       f"not {body_bytes}")
    for entity in entities:
        if type(entity) is not Checked:
            check_entity(entity)


def wire_size(entity: Mapping[str, Any]) -> int:
    """Bytes the entity takes in a JSON request (binary is base64 there)."""
    size = 2 + 40 * len(entity)
    for key, value in entity.items():
        size += len(key)
        kind = type(value)
        if kind is bytes or (kind is not str and isinstance(value, (bytes, bytearray))):
            size += (len(value) + 2) // 3 * 4
        elif kind is str or isinstance(value, str):
            size += len(value) + value.count('"') + value.count("\\") + 2
            if not (value.isascii() and value.isprintable()):  # \uXXXX, as the SDK sends
                size += 5 * len(_ESCAPED.findall(value)) + 6 * sum(
                    1 for c in value if c > "\uffff")  # a surrogate pair: 12 bytes
        else:
            size += 32
    return size


def packed(groups: Iterable[list[Any]], size: Callable[[Any], int] = wire_size,
           group_size: Callable[[list[Any]], int | None] = lambda group: None
           ) -> Iterator[list[Any]]:
    """Groups of items (each group kept together) packed into Azure-sized transactions:
    at most 100 items and MAX_TRANSACTION_WIRE bytes by `size` (or by `group_size`, a
    bound known for a whole group, where it gives one)."""
    batch: list[Any] = []
    batch_bytes = 0
    for group in groups:
        group_bytes = group_size(group)
        if group_bytes is None:
            group_bytes = sum(size(item) for item in group)
        if batch and (len(batch) + len(group) > MAX_TRANSACTION_OPS
                      or batch_bytes + group_bytes > MAX_TRANSACTION_WIRE):
            yield batch
            batch, batch_bytes = [], 0
        batch.extend(group)
        batch_bytes += group_bytes
    if batch:
        yield batch
