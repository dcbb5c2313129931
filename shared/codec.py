"""JSON and compressed JSON for stored and queued data, in one place.

Ingest spends most of its CPU serializing alerts (the stored body, the event, the
outbox), so this uses orjson: 3-5x the stdlib's speed on alert-sized documents. Output is
compact UTF-8. Compressed JSON is a zlib stream, the format rows have always had
("zlib+json"). Level 1 costs a quarter less CPU than 6 for about 8% more bytes.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

LEVEL = 1

DecodeError = orjson.JSONDecodeError  # a ValueError


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Non-string keys are refused, as Defender never sends them."""
    return orjson.dumps(value)


def dumps_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Integers beyond 64 bits come back as floats; NaN and Infinity are refused."""
    return orjson.loads(data)


def pack(value: Any) -> bytes:
    return zlib.compress(orjson.dumps(value), LEVEL)


def unpack(data: bytes) -> Any:
    return orjson.loads(zlib.decompress(data))
