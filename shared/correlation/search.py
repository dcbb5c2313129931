"""What an analyst or a caller names: a pasted value, with the kind it must be (or none:
detected). The one way the portal and the API turn text into an Indicator, so both refuse
the same values with the same reason."""

from __future__ import annotations

from shared.correlation.indicators import parse_indicator
from shared.correlation.model import FILE_NAME, KINDS, Indicator

MAX_FILE_NAME = 255
_NOT_IN_NAMES = set('\\/:*?"<>|') | {chr(c) for c in range(32)}


def indicator_of(value: str, kind: str = "") -> Indicator:
    """The indicator `value` is (of `kind` when given), or ValueError saying why not.
    A file name is never detected (it looks like a domain): it is asked for by kind."""
    if kind and kind not in KINDS:
        raise ValueError(f"the kind must be one of {', '.join(KINDS)}")
    if kind == FILE_NAME:
        name = (value or "").strip()
        if not name:
            raise ValueError("it is empty")
        if len(name) > MAX_FILE_NAME or set(name) & _NOT_IN_NAMES:
            raise ValueError(f"a file name is at most {MAX_FILE_NAME} characters, without a "
                             "path or control characters")
        return Indicator(FILE_NAME, name.lower())
    found = parse_indicator(value)
    if kind and found.kind != kind:
        raise ValueError(f"it is a {found.kind}, not a {kind}")
    return found
