"""Ingestion triggers: the fan-out timer, the fetch worker, the relay."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.queue_messages import parse_or_record
from shared import services
from shared.messages import FetchRequest, RelayRequest
from shared.storage.tables import FETCH_QUEUE, RELAY_QUEUE

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.functions")


@bp.function_name("fanout")
@bp.timer_trigger(arg_name="timer", schedule="%FETCH_SCHEDULE%", use_monitor=True)
def fanout(timer: func.TimerRequest) -> None:
    services.fanout().run(past_due=timer.past_due)


@bp.function_name("fetch")
@bp.queue_trigger(arg_name="msg", queue_name=FETCH_QUEUE, connection="AzureWebJobsStorage")
def fetch(msg: func.QueueMessage) -> None:
    request = parse_or_record(msg, FETCH_QUEUE, FetchRequest.parse)
    if request:
        services.ingestor().run(request)  # raises on transient failure: the host retries


@bp.function_name("relay")
@bp.queue_trigger(arg_name="msg", queue_name=RELAY_QUEUE, connection="AzureWebJobsStorage")
def relay(msg: func.QueueMessage) -> None:
    request = parse_or_record(msg, RELAY_QUEUE, RelayRequest.parse)
    if request:
        services.relay().relay(request.tenant_id)
