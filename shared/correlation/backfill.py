"""Index the alerts stored before correlation existed (`python -m tools.backfill`): each
tenant's Alerts rows in key order, a batch at a time, each batch's alerts read whole and
indexed as the trigger indexes events. Resumable (the place per tenant is kept in the
Correlation table) and harmless beside the running trigger or when repeated: a sighting
already counted is not counted again. Silent: the cluster versions history makes are
recorded (their events kept in the table) but not sent, so no email goes out about old
alerts; build the service with `silent()` queues."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared.alerts.view import AlertView
from shared.correlation.service import Correlation, Indexed, Seen
from shared.storage.alert_rows import OVERFLOW_MARK
from shared.storage.alerts import AlertRepository
from shared.storage.correlation import DONE, CorrelationStore
from shared.storage.keys import decode_key
from shared.storage.queues import EventQueue

BATCH_ROWS = 200


class _Discard:
    def send_message(self, content: str, visibility_timeout: int | None = None) -> None:
        """Nothing: the backfill's events are not sent."""


def silent() -> EventQueue:
    """A queue that sends nothing (the backfill's notify and SIEM)."""
    return EventQueue(_Discard())


def backfill(service: Correlation, store: CorrelationStore, alerts: AlertRepository,
             tenants: Iterable[tuple[str, str]], batch_rows: int = BATCH_ROWS,
             log: Callable[[str], Any] = lambda _: None) -> Indexed:
    """Every listed tenant's (id, name) stored alerts indexed, from where the last run
    stopped."""
    total = Indexed()
    for tenant_id, name in tenants:
        after = store.backfilled_to(tenant_id)
        while after != DONE:
            rows = alerts.main_rows(tenant_id, after, batch_rows)
            seen = []
            for row in rows:
                if OVERFLOW_MARK in row["RowKey"]:
                    continue
                alert_id = decode_key(row["RowKey"])
                found = alerts.alert_and_schema(tenant_id, alert_id)
                if found is not None:
                    seen.append(Seen(tenant_id, name, alert_id,
                                     AlertView.of(found[0], found[1])))
            total.add(service.index_views(seen))
            after = rows[-1]["RowKey"] if len(rows) == batch_rows else DONE
            store.mark_backfilled(tenant_id, after)
        log(f"correlation: {tenant_id} indexed ({total.alerts} alerts so far)")
    return total
