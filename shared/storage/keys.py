"""Table keys that Azure accepts, from any alert id, reversibly.

Azure forbids `/ \\ # ?` and control characters (U+0000-U+001F, U+007F-U+009F) in
PartitionKey and RowKey; they are percent-encoded here, and so is `%` itself, so that
`decode_key(encode_key(x)) == x` for every x.
"""

from __future__ import annotations

import re

_FORBIDDEN = set("/\\#?%")
_ESCAPE = re.compile(r"%([0-9A-F]{2}|u[0-9A-F]{4})")
_ANY_FORBIDDEN = re.compile(r"[/\\#?%\x00-\x1f\x7f-\x9f]")
MAX_KEY_BYTES = 1024


def _needs_escape(ch: str) -> bool:
    code = ord(ch)
    return ch in _FORBIDDEN or code < 0x20 or 0x7F <= code <= 0x9F


def encode_key(value: str) -> str:
    if not _ANY_FORBIDDEN.search(value):  # the common case, without a loop per character
        if not value or len(value.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError("a table key must be 1 to 1024 bytes")
        return value
    out = []
    for ch in value:
        if _needs_escape(ch):
            code = ord(ch)
            out.append(f"%{code:02X}" if code < 0x100 else f"%u{code:04X}")
        else:
            out.append(ch)
    key = "".join(out)
    if not key or len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError("a table key must be 1 to 1024 bytes")
    return key


def decode_key(key: str) -> str:
    def undo(m: re.Match[str]) -> str:
        code = m.group(1)
        return chr(int(code[1:], 16)) if code.startswith("u") else chr(int(code, 16))

    return _ESCAPE.sub(undo, key)
