"""Simulated time: real UTC plus an offset tests can advance, in .NET ticks (100 ns).

Defender timestamps carry up to 7 fractional digits; Python's datetime keeps 6, so the
simulator compares times as integer ticks to stay exact.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta

TICKS_PER_SECOND = 10_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?(Z|[+-]\d{2}:\d{2})$")


def parse_ticks(text: str) -> int:
    """ISO 8601 with up to 7 fractional digits to ticks since the Unix epoch."""
    m = _ISO.match(text)
    if not m:
        raise ValueError(f"not a datetime: {text!r}")
    whole, frac, zone = m.groups()
    stamp = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    seconds = int((stamp - _EPOCH) // timedelta(seconds=1))
    return seconds * TICKS_PER_SECOND + int((frac or "").ljust(7, "0"))


def format_ticks(ticks: int) -> str:
    """Ticks to Defender's form: UTC, 'Z', trailing zeros of the fraction trimmed."""
    seconds, rest = divmod(ticks, TICKS_PER_SECOND)
    whole = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{rest:07d}".rstrip("0")
    return f"{whole}.{frac}Z" if frac else f"{whole}Z"


class Clock:
    """Wall-clock time shifted by an offset that only moves forward."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()
        self._last = 0

    def now(self) -> float:
        return time.time() + self._offset

    def now_ticks(self) -> int:
        """Strictly increasing ticks, so two events never share a time by accident."""
        with self._lock:
            ticks = max(int(self.now() * TICKS_PER_SECOND), self._last + 1)
            self._last = ticks
            return ticks

    def state(self) -> tuple[float, int]:
        """(offset, last tick handed out): what a restarted simulator needs to go on."""
        with self._lock:
            return self._offset, self._last

    def restore(self, offset: float, last_ticks: int) -> None:
        """Go on from a saved state: never behind it, so times keep increasing."""
        with self._lock:
            self._offset = max(self._offset, offset)
            self._last = max(self._last, last_ticks)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
