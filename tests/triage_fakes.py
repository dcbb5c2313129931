"""Fakes at the edge for bulk triage tests and its benchmark: Defender's write endpoints
(with its per-tenant limits on the batch and PATCH calls, as the simulator counts them),
a queue that keeps what was sent, a virtual clock, and an audit trail that records an
action id once; and one tenant's Graph alerts or incidents with the tokens asked for
(the Graph triage tests). The simulator's own batchUpdate replaces FakeDefender in the
integration test once it has one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from devtools.simulator.ratelimit import Limits, SlidingLimiter
from shared import timefmt
from shared.messages import BulkTriageRequest
from shared.microsoft.defender import DefenderError, NotFound, Throttled
from shared.triage.model import AuditEntry


class Killed(BaseException):
    """The worker stops here (not an Exception: nothing catches it)."""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 8, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeDefender:
    """Alerts per tenant (the base URL names the tenant); every call recorded."""

    def __init__(self, clock: Clock, limited: bool = False) -> None:
        self.clock, self.limited = clock, limited
        self.limits = {"batch": Limits(10, 500), "patch": Limits(100, 1500)}
        self.tenant_limits: dict[str, dict[str, Limits]] = {}  # a tenant's own, lower
        self.limiters: dict[tuple[str, str], SlidingLimiter] = {}
        self.refused = 0  # calls answered 429 by the limits
        self.alerts: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, datetime, int]] = []  # kind, tenant, at, ids
        self.fail: dict[str, list[BaseException | tuple[str, BaseException]]] = {}
        self.readable = True

    def seed(self, tenant_id: str, n: int) -> list[str]:
        ids = [f"da{tenant_id[-4:]}-{i:05d}" for i in range(n)]
        self.alerts[tenant_id] = {a: {"id": a, "status": "New", "comments": []} for a in ids}
        return ids

    def _admit(self, kind: str, tenant_id: str) -> None:
        if not self.limited:
            return
        limiter = self.limiters.setdefault((kind, tenant_id), SlidingLimiter())
        limits = self.tenant_limits.get(tenant_id, self.limits)[kind]
        wait = limiter.admit(self.clock().timestamp(), limits)
        if wait:
            self.refused += 1
            raise Throttled(wait)

    def _fault(self, tenant_id: str, when: str) -> None:
        queue = self.fail.get(tenant_id) or []
        if queue and (not isinstance(queue[0], tuple) or queue[0][0] == when):
            fault = queue.pop(0)
            raise fault[1] if isinstance(fault, tuple) else fault

    def _apply(self, tenant_id: str, alert_id: str, body: dict[str, Any]) -> dict[str, Any]:
        alert = self.alerts[tenant_id][alert_id]
        for key in ("status", "assignedTo", "classification", "determination"):
            if key in body:
                alert[key] = body[key]
        if "comment" in body:
            alert["comments"].append({"comment": body["comment"], "createdBy": "app"})
        return alert

    def batch_update(self, base: str, token: str, alert_ids: list[str],
                     body: dict[str, Any]) -> None:
        tenant_id = base.removeprefix("https://")
        self.calls.append(("batch", tenant_id, self.clock(), len(alert_ids)))
        self._fault(tenant_id, "before")
        self._admit("batch", tenant_id)
        for alert_id in alert_ids:
            self._apply(tenant_id, alert_id, body)
        self._fault(tenant_id, "after")

    def update_alert(self, base: str, token: str, alert_id: str, body: dict[str, Any]
                     ) -> dict[str, Any]:
        tenant_id = base.removeprefix("https://")
        self.calls.append(("patch", tenant_id, self.clock(), 1))
        self._fault(tenant_id, "before")
        self._admit("patch", tenant_id)
        if alert_id not in self.alerts[tenant_id]:
            raise DefenderError("Defender API 404 NotFound: no such alert", 404, "NotFound",
                                transient=False)
        return dict(self._apply(tenant_id, alert_id, body))

    def get_alert(self, base: str, token: str, alert_id: str) -> dict[str, Any] | None:
        if not self.readable:
            raise DefenderError("Defender API unreachable: ConnectTimeout")
        return self.alerts[base.removeprefix("https://")].get(alert_id)


class Queue:
    def __init__(self) -> None:
        self.sent: list[tuple[BulkTriageRequest, int | None]] = []

    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        self.sent.append((BulkTriageRequest.parse(content), visibility_timeout))


class Audit:
    """Like the AuditTrail: an action id is recorded once."""

    def __init__(self) -> None:
        self.entries: dict[str, AuditEntry] = {}
        self.writes = 0
        self.kill_after: int | None = None

    def record(self, entries: list[AuditEntry]) -> None:
        for entry in entries:
            self.entries.setdefault(entry.action_id, entry)
            self.writes += 1
        if self.kill_after is not None and self.writes >= self.kill_after:
            self.kill_after = None
            raise Killed


def drain(queue: Queue, run: Any, clock: Clock, max_rounds: int = 10_000) -> int:
    """Deliver queued messages as the queue would: each when its delay is over, in that
    order, the clock moved on when only delayed ones are left; the deliveries made."""
    due: list[tuple[datetime, int, BulkTriageRequest]] = []
    rounds = 0
    while rounds < max_rounds:
        due += [(clock() + timedelta(seconds=d or 0), rounds * 1000 + n, m)
                for n, (m, d) in enumerate(queue.sent)]
        queue.sent.clear()
        if not due:
            return rounds
        due.sort(key=lambda x: (x[0], x[1]))
        at, _, message = due.pop(0)
        if at > clock():
            clock.now = at
        run(message)
        rounds += 1
    raise AssertionError("the queue did not drain")


class FakeGraphItems:
    """One tenant's Graph alerts or incidents (`items`), every call recorded; each write
    moves the item's lastUpdateDateTime; `refuse` raises on the next calls (None: that
    call passes). The alert and incident fakes name their calls as Graph's client does."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.refuse: list[Exception | None] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.tick = 0

    def _take(self, kind: str, item_id: str, body: Any) -> None:
        self.calls.append((kind, item_id, body))
        if self.refuse:
            failure = self.refuse.pop(0)
            if failure is not None:
                raise failure
        if item_id not in self.items:
            raise NotFound("not found", 404, "NotFound", transient=False)

    def _moved(self, item_id: str, **changes: Any) -> dict[str, Any]:
        self.tick += 1
        item = {**self.items[item_id], **changes,
                "lastUpdateDateTime": f"2026-12-03T09:00:{self.tick:02d}.0000001Z"}
        self.items[item_id] = item
        return item

    def _read(self, item_id: str) -> dict[str, Any]:
        self._take("GET", item_id, None)
        return dict(self.items[item_id])

    def _comment(self, item_id: str, comment: str) -> list[dict[str, Any]]:
        self._take("POST", item_id, comment)
        item = self._moved(item_id, comments=[
            *self.items[item_id]["comments"],
            {"comment": comment, "createdByDisplayName": "MSSP Hub triage",
             "createdDateTime": timefmt.from_datetime(datetime.now(UTC))}])
        return list(item["comments"])


class GraphTokens:
    """Tokens for any tenant; the scopes asked for, in order."""

    def __init__(self) -> None:
        self.scopes: list[str | None] = []

    def token(self, tenant_id: str, scope: str | None = None) -> str:
        self.scopes.append(scope)
        return f"token-{tenant_id}"

    def forget(self, tenant_id: str) -> None:
        pass
