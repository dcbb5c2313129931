"""In-memory channel status: same contract as shared/storage/channel_status.py
(tests/contract/test_channels.py)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from shared.storage.channel_status import HEALTH_ROWS, ChannelState


class MemoryChannelStatus:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], ChannelState] = {}
        self._lock = threading.Lock()

    def record(self, rule_id: str, name: str, scope: str, result: str) -> None:
        with self._lock:
            self.rows[(rule_id, name)] = ChannelState(rule_id, name, scope, result[:1000],
                                                      datetime.now(UTC), False)

    def mark_failing(self, rule_id: str, name: str, scope: str, reason: str,
                     fingerprint: str = "") -> None:
        with self._lock:
            self.rows[(rule_id, name)] = ChannelState(
                rule_id, name, scope, f"failing: {reason}"[:1000], datetime.now(UTC), True,
                reason[:1000], fingerprint)

    def get(self, rule_id: str, name: str) -> ChannelState | None:
        return self.rows.get((rule_id, name))

    def for_rule(self, rule_id: str) -> list[ChannelState]:
        with self._lock:
            return sorted((s for (r, _), s in self.rows.items() if r == rule_id),
                          key=lambda s: s.name)

    def reset(self, rule_id: str) -> None:
        with self._lock:
            for key, state in self.rows.items():
                if key[0] == rule_id and state.failing:
                    self.rows[key] = dataclasses.replace(state, failing=False, reason="",
                                                         fingerprint="")

    def forget(self, rule_id: str, keep: Collection[str] = ()) -> None:
        kept = {name.lower() for name in keep}
        with self._lock:
            for key in [k for k in self.rows if k[0] == rule_id and k[1].lower() not in kept]:
                del self.rows[key]

    def failing(self, limit: int = HEALTH_ROWS, **probe: Any) -> list[ChannelState]:
        with self._lock:
            found = [s for s in self.rows.values() if s.failing]
        return sorted(found, key=lambda s: (s.rule_id, s.name))[:limit]
