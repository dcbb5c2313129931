"""SIEM triggers: events into the feed, deliveries to push outputs, the pull API."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from functions.http import data_response, invalid, json_response
from functions.queue_messages import parse_or_record
from shared import services
from shared.logsafe import clean
from shared.messages import DeliverRequest, queue_events
from shared.siem.outputs import OutputsReport
from shared.siem.pull import PullPage, parse_query, pull
from shared.storage.tables import SIEM_DELIVERY_QUEUE, SIEM_QUEUE
from shared.validation import ValidationError

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.siem")


@bp.function_name("siem_feed")
@bp.queue_trigger(arg_name="msg", queue_name=SIEM_QUEUE, connection="AzureWebJobsStorage")
def siem_feed(msg: func.QueueMessage) -> None:
    events = parse_or_record(msg, SIEM_QUEUE, queue_events)
    if events:  # a redelivered batch: the events in already are no-ops
        services.feed().append_all(events)


@bp.function_name("siem_push")
@bp.timer_trigger(arg_name="timer", schedule="%SIEM_PUSH_SCHEDULE%", use_monitor=False)
def siem_push(timer: func.TimerRequest) -> None:
    services.delivery().tick()
    services.feed().prune_if_due()


@bp.function_name("siem_deliver")
@bp.queue_trigger(arg_name="msg", queue_name=SIEM_DELIVERY_QUEUE,
                  connection="AzureWebJobsStorage")
def siem_deliver(msg: func.QueueMessage) -> None:
    request = parse_or_record(msg, SIEM_DELIVERY_QUEUE, DeliverRequest.parse)
    if request is None:
        return
    outcome = services.delivery().deliver(request.output)
    log.info("siem output %s: %s, %d events in %d batches", clean(request.output), outcome.status,
             outcome.delivered, outcome.batches)


@bp.route(route="siem/alerts", methods=["GET"])
def siem_alerts(req: func.HttpRequest) -> func.HttpResponse:
    try:
        query = parse_query(dict(req.params), req.headers.get("Accept", ""))
    except ValidationError as exc:
        return invalid(exc, "invalid query")
    items, token, more = pull(services.feed(), query)
    headers = {"X-Continuation": token, "X-More": "true" if more else "false"}
    if query.ndjson:
        body = "".join(json.dumps(i.model_dump(mode="json"), separators=(",", ":")) + "\n"
                       for i in items)
        return data_response(body, "application/x-ndjson", 200, headers)
    return json_response(PullPage(items=items, continuation=token, more=more), 200, headers)


@bp.route(route="siem/outputs", methods=["GET"])
def siem_outputs(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(OutputsReport.model_validate({"outputs": services.delivery().status()}))
