"""Defender's per-app, per-tenant call limits: sliding windows of a minute and an hour."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Limits:
    per_minute: int = 100
    per_hour: int = 1500


@dataclass
class SlidingLimiter:
    """Counts accepted calls; refuses one that would exceed a window, saying for how long."""

    calls: deque[float] = field(default_factory=deque)

    def admit(self, now: float, limits: Limits) -> int:
        """0 if the call is admitted (and counted); otherwise Retry-After in seconds."""
        while self.calls and self.calls[0] <= now - 3600:
            self.calls.popleft()
        in_minute = sum(1 for t in reversed(self.calls) if t > now - 60)
        waits = []
        if in_minute >= limits.per_minute:
            oldest = self.calls[len(self.calls) - in_minute]
            waits.append(oldest + 60 - now)
        if len(self.calls) >= limits.per_hour:
            waits.append(self.calls[len(self.calls) - limits.per_hour] + 3600 - now)
        if waits:
            return max(1, math.ceil(max(waits)))
        self.calls.append(now)
        return 0
