"""Defender's timestamps, exact to its 7 fractional digits, in a form that sorts as text.

Python's datetime keeps 6 digits; Defender sends up to 7 (`...57.7220239Z`) and sometimes
fewer. `normalize` gives UTC with exactly 7 digits, so string order is time order and no
two distinct Defender times collapse into one (which would break a cursor).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_CANONICAL = re.compile(  # normalize's own output, in ASCII digits
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{7}Z")
_UTC = re.compile(  # a Defender time in UTC: its date is the UTC day
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?Z")
_ISO = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}:[0-9]{2}:[0-9]{2})"
                  r"(?:\.([0-9]{1,7}))?(Z|[+-][0-9]{2}:[0-9]{2})?$")


def normalize(text: str) -> str:
    """'2021-01-26T21:33:57.72+01:00' -> '2021-01-26T20:33:57.7200000Z'."""
    if len(text) == 28 and _CANONICAL.fullmatch(text):  # most of Defender's, and ours
        return text
    m = _ISO.match(text.strip())
    if not m:
        raise ValueError(f"not a Defender timestamp: {text[:40]!r}")
    day, clock, frac, zone = m.groups()
    if zone in (None, "Z", "+00:00", "-00:00"):
        return f"{day}T{clock}.{(frac or '').ljust(7, '0')}Z"
    stamp = datetime.fromisoformat(f"{day}T{clock}{zone}").astimezone(UTC)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{(frac or '').ljust(7, '0')}Z"


def utc_day(text: object) -> str:
    """'2021-01-26T23:33:57.72-05:00' -> '20210127'; ValueError if `text` is no time."""
    if type(text) is str and _UTC.fullmatch(text):  # most of them: no parse needed
        return text[:4] + text[5:7] + text[8:10]
    if not isinstance(text, str):
        raise ValueError(f"not a Defender timestamp: {text!r:.40}")
    return normalize(text)[:10].replace("-", "")


def to_datetime(text: str) -> datetime:
    """A normalized or raw Defender time as an aware datetime (microseconds)."""
    n = normalize(text)
    return datetime.fromisoformat(n[:26] + "+00:00")  # 5x faster than .replace(tzinfo)


def from_datetime(when: datetime) -> str:
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{when.microsecond:06d}0Z"


def shift(text: str, seconds: float) -> str:
    """A normalized time moved by `seconds` (the 7th digit kept)."""
    n = normalize(text)
    moved = to_datetime(n) + timedelta(seconds=seconds)
    return f"{moved:%Y-%m-%dT%H:%M:%S}.{moved.microsecond:06d}{n[26]}Z"
