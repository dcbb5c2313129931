"""Timer triggers: NCRONTAB schedules, run_on_startup, past_due, the schedule monitor.

As in the host: seconds come first in a 6-field expression; `%NAME%` is read from app
settings; times are UTC; one run at a time per schedule (an overrunning run skips the
occurrences it covered); a failed run is logged and never retried. With the schedule
monitor on (default for intervals of a minute or more) the last and next occurrences are
kept in storage, and an occurrence missed while the host was down runs at start-up with
`past_due=True`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Mapping
from concurrent.futures import CancelledError
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.invoker import Invoker
from devhost.loader import FunctionDef

log = logging.getLogger("devhost")
_SETTING_REF = re.compile(r"^%([^%]+)%$")


def resolve_schedule(expression: str, env: Mapping[str, str] = os.environ) -> str:
    """`%NAME%` to the app setting's value, then check it is NCRONTAB (5 or 6 fields)."""
    m = _SETTING_REF.match(expression.strip())
    if m:
        if m.group(1) not in env:
            raise ValueError(f"timer schedule refers to app setting {m.group(1)}, "
                             "which is not set")
        expression = env[m.group(1)]
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(
            expression, second_at_beginning=len(fields) == 6):
        if m:  # a setting's value is never repeated: name the setting
            raise ValueError(f"app setting {m.group(1)}: not a valid NCRONTAB expression "
                             "(6 fields, seconds first)")
        raise ValueError(f"timer schedule {expression!r} is not a valid NCRONTAB expression")
    return expression


class Schedule:
    """Occurrences of one NCRONTAB expression, in UTC."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._seconds = len(expression.split()) == 6

    def next_after(self, when: datetime) -> datetime:
        it = croniter(self.expression, when, second_at_beginning=self._seconds)
        return it.get_next(datetime)

    def interval(self, when: datetime) -> timedelta:
        first = self.next_after(when)
        return self.next_after(first) - first


class ScheduleMonitor:
    """Last/next occurrence per timer function, kept in Table storage."""

    def __init__(self, table: TableClient, host_id: str) -> None:
        self.table, self.host_id = table, host_id
        with contextlib.suppress(ResourceExistsError):
            table.create_table()

    def get(self, function: str) -> dict[str, datetime] | None:
        try:
            row = self.table.get_entity(self.host_id, function)
        except ResourceNotFoundError:
            return None
        return {k: row[k] for k in ("Last", "Next", "LastUpdated") if k in row}

    def put(self, function: str, last: datetime, next_: datetime) -> None:
        self.table.upsert_entity({"PartitionKey": self.host_id, "RowKey": function,
                                  "Last": last, "Next": next_,
                                  "LastUpdated": datetime.now(UTC)}, mode=UpdateMode.REPLACE)


class TimerRunner:
    """One thread per timer function."""

    def __init__(self, fdef: FunctionDef, invoker: Invoker,
                 monitor: ScheduleMonitor | None) -> None:
        self.fdef, self.invoker = fdef, invoker
        self.schedule = Schedule(resolve_schedule(fdef.trigger.schedule))
        use_monitor = fdef.trigger.use_monitor
        if use_monitor is None:
            use_monitor = self.schedule.interval(datetime.now(UTC)) >= timedelta(minutes=1)
        self.monitor = monitor if use_monitor else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"timer:{fdef.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """True if the timer thread (and so its run) has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _fire(self, scheduled: datetime, past_due: bool, reason: str) -> None:
        status = self.monitor.get(self.fdef.name) if self.monitor else None
        request = TimerRequest(
            past_due=past_due,
            schedule_status={k: v.isoformat() for k, v in (status or {}).items()},
            schedule={"AdjustForDST": True},
        )
        try:
            self.invoker.submit(self.fdef, request, reason=reason).result()
        except CancelledError:  # the host is stopping: the run never started, and the
            return  # schedule monitor keeps it due, so the next start runs it past due
        if self.monitor:
            self.monitor.put(self.fdef.name, scheduled,
                             self.schedule.next_after(datetime.now(UTC)))

    def _run(self) -> None:
        now = datetime.now(UTC)
        status = self.monitor.get(self.fdef.name) if self.monitor else None
        if status and status.get("Next") and status["Next"] < now:
            self._fire(status["Next"], True, "Timer is past due")
        elif self.fdef.trigger.run_on_startup:
            self._fire(now, False, "RunOnStartup")
        elif self.monitor and not status:
            self.monitor.put(self.fdef.name, now, self.schedule.next_after(now))
        while not self._stop.is_set():
            due = self.schedule.next_after(datetime.now(UTC))
            while not self._stop.is_set():
                left = (due - datetime.now(UTC)).total_seconds()
                if left <= 0:
                    break
                self._stop.wait(min(left, 1.0))
            if self._stop.is_set():
                return
            self._fire(due, False, "Timer fired at " + due.isoformat())
