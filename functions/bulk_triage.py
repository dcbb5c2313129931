"""Bulk triage triggers: the tenant worker (bulk-triage queue) and the keyed API to start
a job and follow it. Its poison queue is drained by functions/ops.py's timer, which also
fails what the tenant's part left pending (shared/services.py poison_drain_on)."""

from __future__ import annotations

import azure.functions as func

from functions.http import invalid, json_response, refused
from functions.queue_messages import parse_or_record
from shared import services, validation
from shared.messages import BulkTriageRequest
from shared.storage.tables import BULK_QUEUE
from shared.triage import api
from shared.triage.bulk import BadSelection
from shared.triage.bulk_api import BulkAccepted, BulkJobView, BulkRequest, matching
from shared.triage.model import InvalidChange
from shared.validation import ValidationError

bp = func.Blueprint()
PAGE_MAX = 1000


@bp.function_name("bulk_triage")
@bp.queue_trigger(arg_name="msg", queue_name=BULK_QUEUE, connection="AzureWebJobsStorage")
def bulk_triage(msg: func.QueueMessage) -> None:
    request = parse_or_record(msg, BULK_QUEUE, BulkTriageRequest.parse)
    if request:
        services.bulk_triage().run(request)  # raises on a transient failure: retried


@bp.function_name("alerts_bulk")
@bp.route(route="alerts/bulk", methods=["POST"])
def alerts_bulk(req: func.HttpRequest) -> func.HttpResponse:
    """202 with the job's id and status URL; 400 naming the field otherwise."""
    actor = api.api_actor(services.get_settings().api_keys, req.headers.get("X-Api-Key"))
    if actor is None:
        return json_response(api.UNAUTHORIZED, 401)
    try:
        body = validation.body(BulkRequest, req.get_body())
        targets, source = body.targets(lambda params: matching(
            services.alert_index(), services.tenants().names(), params))
        job = services.bulk_triage().submit(actor, body.change.change(), targets,
                                            job_id=body.job_id, source=source)
    except ValidationError as exc:
        return invalid(exc)
    except InvalidChange as exc:
        return refused(400, "invalid change", f"change.{exc.field}", exc.message)
    except BadSelection as exc:
        return refused(400, "invalid selection", "filter" if body.filter else "alerts",
                       str(exc))
    url = f"/api/alerts/bulk/{job.job_id}"
    return json_response(BulkAccepted(job_id=job.job_id, status_url=url, total=job.total,
                                      tenants=job.tenants), 202, {"Location": url})


@bp.function_name("alerts_bulk_status")
@bp.route(route="alerts/bulk/{job_id}", methods=["GET"])
def alerts_bulk_status(req: func.HttpRequest) -> func.HttpResponse:
    job_id = req.route_params.get("job_id", "")
    after = req.params.get("after", "")
    try:
        limit = int(req.params.get("limit", "100"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= PAGE_MAX:
        return refused(400, "invalid request", "limit", f"must be 1..{PAGE_MAX}")
    if len(after) > validation.MAX_PARAM:
        return refused(400, "invalid request", "after", "is too long")
    status = services.bulk_triage().status(job_id, after, limit) \
        if len(job_id) == 32 and job_id.isalnum() else None
    if status is None:
        return refused(404, "no such job", "job_id", "not found")
    return json_response(BulkJobView.of(status))
