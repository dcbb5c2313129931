"""Ingestion triggers: the fan-out timer, the fetch worker, the relay, the poison handler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import azure.functions as func

from shared import services
from shared.messages import BadMessage, FetchRequest, RelayRequest
from shared.storage.tables import FETCH_QUEUE, RELAY_QUEUE

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.functions")
T = TypeVar("T")


@bp.function_name("fanout")
@bp.timer_trigger(arg_name="timer", schedule="%FETCH_SCHEDULE%", use_monitor=True)
def fanout(timer: func.TimerRequest) -> None:
    services.fanout().run(past_due=timer.past_due)


def _parse(msg: func.QueueMessage, queue: str, parse: Callable[[str], T]) -> T | None:
    """The message, or None after recording why it can never be processed."""
    body = msg.get_body().decode("utf-8", "replace")
    try:
        return parse(body)
    except BadMessage as exc:  # no retry can fix it: keep it with the reason
        services.poison_log().record(queue, body, f"bad message: {exc}")
        return None


@bp.function_name("fetch")
@bp.queue_trigger(arg_name="msg", queue_name=FETCH_QUEUE, connection="AzureWebJobsStorage")
def fetch(msg: func.QueueMessage) -> None:
    request = _parse(msg, FETCH_QUEUE, FetchRequest.parse)
    if request:
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
    request = _parse(msg, RELAY_QUEUE, RelayRequest.parse)
    if request:
        services.relay().relay(request.tenant_id)


@bp.function_name("relay_poison")
@bp.queue_trigger(arg_name="msg", queue_name=f"{RELAY_QUEUE}-poison",
                  connection="AzureWebJobsStorage")
def relay_poison(msg: func.QueueMessage) -> None:
    # the outbox rows stay; the tenant's next fetch re-enqueues their relay
    body = msg.get_body().decode("utf-8", "replace")
    services.poison_log().record(RELAY_QUEUE, body, "relay failed on every attempt")
