"""Correlation trigger: the relay's copy of each chunk of alert events in, each alert's
indicators indexed across tenants (shared/correlation/service.py)."""

from __future__ import annotations

import azure.functions as func

from functions.queue_messages import parse_or_record
from shared import services
from shared.messages import alert_events
from shared.storage.tables import CORRELATE_QUEUE

bp = func.Blueprint()


@bp.function_name("correlate")
@bp.queue_trigger(arg_name="msg", queue_name=CORRELATE_QUEUE, connection="AzureWebJobsStorage")
def correlate(msg: func.QueueMessage) -> None:
    events = parse_or_record(msg, CORRELATE_QUEUE, alert_events)
    if events:
        services.correlation().index(events)  # a storage failure raises: the host retries
