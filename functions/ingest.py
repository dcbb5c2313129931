"""Ingestion triggers: the fan-out timer, the fetch worker, the relay, the poison handler."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import services
from shared.messages import BadMessage, FetchRequest, RelayRequest
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
    body = msg.get_body().decode("utf-8", "replace")
    try:
        request = FetchRequest.parse(body)
    except BadMessage as exc:  # no retry can fix it: keep it with the reason
        services.poison_log().record(FETCH_QUEUE, body, f"bad message: {exc}")
        return
    services.ingestor().run(request)  # raises on transient failure: the host retries


@bp.function_name("fetch_poison")
@bp.queue_trigger(arg_name="msg", queue_name=f"{FETCH_QUEUE}-poison",
                  connection="AzureWebJobsStorage")
def fetch_poison(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8", "replace")
    services.poison_log().record(FETCH_QUEUE, body,
                                 "fetch failed on every attempt (maxDequeueCount)")


@bp.function_name("relay")
@bp.queue_trigger(arg_name="msg", queue_name=RELAY_QUEUE, connection="AzureWebJobsStorage")
def relay(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode("utf-8", "replace")
    try:
        request = RelayRequest.parse(body)
    except BadMessage as exc:
        services.poison_log().record(RELAY_QUEUE, body, f"bad message: {exc}")
        return
    services.relay().relay(request.tenant_id)


@bp.function_name("relay_poison")
@bp.queue_trigger(arg_name="msg", queue_name=f"{RELAY_QUEUE}-poison",
                  connection="AzureWebJobsStorage")
def relay_poison(msg: func.QueueMessage) -> None:
    # the outbox rows stay; the tenant's next fetch re-enqueues their relay
    body = msg.get_body().decode("utf-8", "replace")
    services.poison_log().record(RELAY_QUEUE, body, "relay failed on every attempt")
