"""Each tenant's budget of Defender write calls, in storage: several workers spend it.

Defender limits calls per app per tenant (batchUpdate: 10 a minute, 500 an hour; PATCH:
100 a minute, 1,500 an hour). A worker takes a call from the budget before it makes one;
the row (CallBudget, PartitionKey tenant id, RowKey the kind of call) keeps the times of
the calls of the last hour, and a hold until which Defender asked us to wait (its 429's
Retry-After). Taking is an etag-guarded replace, so two workers cannot both spend the
tenth call of a minute; a worker that dies after taking a call wastes it, never exceeds
the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.storage.errors import StateChanged

MINUTE, HOUR = 60.0, 3600.0
# (calls, held until) -> None (nothing to write) or (seconds to wait, calls, held until)
Change = Callable[[list[float], float], "tuple[float, list[float], float] | None"]
ATTEMPTS = 8  # guarded writes lost to other workers before giving up (StateChanged)


@dataclass(frozen=True)
class Limits:
    per_minute: int
    per_hour: int


BATCH = Limits(10, 500)  # POST /api/alerts/batchUpdate
# Microsoft Graph's security API, per app per tenant: 150 requests a minute (the hour's
# is the minute's times 60: Graph documents none)
GRAPH = Limits(150, 9_000)
PATCH = Limits(100, 1_500)  # PATCH /api/alerts/{id}


def wait_for(calls: list[float], held_until: float, now: float, limits: Limits) -> float:
    """Seconds until one more call fits `limits` (0: now), given the calls made."""
    waits = [held_until - now]
    minute = [t for t in calls if t > now - MINUTE]
    if len(minute) >= limits.per_minute:
        waits.append(minute[-limits.per_minute] + MINUTE - now)
    hour = [t for t in calls if t > now - HOUR]
    if len(hour) >= limits.per_hour:
        waits.append(hour[-limits.per_hour] + HOUR - now)
    return max(0.0, *waits)


class CallBudget:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    # the row: (calls in the last hour, held until, etag or None) ---------------------------
    def _read(self, tenant_id: str, kind: str) -> tuple[list[float], float, str | None]:
        try:
            row = self.client.get_entity(tenant_id, kind)
        except ResourceNotFoundError:
            return [], 0.0, None
        calls = [float(t) for t in str(row.get("Calls", "")).split(",") if t]
        return calls, float(row.get("HeldUntil", 0.0)), row.metadata["etag"]

    def _write(self, tenant_id: str, kind: str, calls: list[float], held_until: float,
               etag: str | None) -> None:
        entity = {"PartitionKey": tenant_id, "RowKey": kind, "HeldUntil": held_until,
                  "Calls": ",".join(f"{t:.3f}" for t in calls)}
        try:
            if etag is None:
                self.client.create_entity(entity)
            else:
                self.client.update_entity(entity, mode=UpdateMode.REPLACE, etag=etag,
                                          match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError) as exc:
            raise StateChanged("another worker spent the budget meanwhile") from exc

    def _guarded(self, tenant_id: str, kind: str, change: Change) -> float:
        """Apply `change` to the row (None: nothing to write), retried when another
        worker wrote the row between the read and the write."""
        for _ in range(ATTEMPTS):
            calls, held, etag = self._read(tenant_id, kind)
            result = change(calls, held)
            if result is None:
                return 0.0
            wait, calls, held = result
            if wait > 0:
                return float(wait)
            try:
                self._write(tenant_id, kind, calls, held, etag)
                return 0.0
            except StateChanged:
                continue
        raise StateChanged(f"the {kind} budget of {tenant_id} is contended")

    # what services call -------------------------------------------------------------------
    def take(self, tenant_id: str, kind: str, limits: Limits, now: datetime | None = None
             ) -> float:
        """Spend one call now (0.0), or the seconds to wait before one fits (nothing
        spent)."""
        at = (now or datetime.now(UTC)).timestamp()

        def spend(calls: list[float], held: float) -> tuple[float, list[float], float]:
            recent = sorted(t for t in calls if t > at - HOUR)
            return wait_for(recent, held, at, limits), [*recent, at], held

        return self._guarded(tenant_id, kind, spend)

    def hold(self, tenant_id: str, kind: str, until: datetime) -> None:
        """Defender said wait (429): no call of this kind before `until`."""
        at = until.timestamp()

        def held(calls: list[float], current: float) -> tuple[float, list[float], float] | None:
            return None if current >= at else (0.0, calls, at)

        self._guarded(tenant_id, kind, held)

    def spent(self, tenant_id: str, kind: str) -> list[datetime]:
        """The calls of the last hour, oldest first (for tests and the benchmark)."""
        return [datetime.fromtimestamp(t, UTC) for t in sorted(self._read(tenant_id, kind)[0])]
