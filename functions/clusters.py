"""Correlation through the keyed API: clusters, indicator lookup and the suppression list.
Reads take the function key; a change also takes a named automation key (X-Api-Key), whose
name is the suppression's author. The logic is shared/correlation/api.py."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import invalid, json_response, refused
from shared import services, validation
from shared.correlation import api
from shared.logsafe import clean
from shared.triage.api import UNAUTHORIZED, api_actor
from shared.validation import ValidationError

bp = func.Blueprint()
log = logging.getLogger("mssp_hub.correlation")
BAD_CURSOR = ("invalid request", "cursor", "not a cursor this API gave")


@bp.function_name("clusters_list")
@bp.route(route="clusters", methods=["GET"])
def clusters_list(req: func.HttpRequest) -> func.HttpResponse:
    reads = services.correlation()
    try:
        found, cursor = reads.clusters(**api.clusters_query(req.params))
    except ValidationError as exc:
        return invalid(exc)
    except ValueError:
        return refused(400, *BAD_CURSOR)
    return json_response(api.ClusterPage(clusters=[api.ClusterView.of(c) for c in found],
                                         cursor=cursor))


@bp.function_name("cluster_of_indicator")
@bp.route(route="clusters/{kind}", methods=["GET"])
def cluster_of_indicator(req: func.HttpRequest) -> func.HttpResponse:
    reads = services.correlation()
    try:
        kind = api.check_kind(req.route_params.get("kind", ""))
        indicator = api.indicator_query(req.params, kind)
    except ValidationError as exc:
        return invalid(exc)
    cluster = reads.cluster(indicator)
    if cluster is None:
        return refused(404, "not a cluster", "value", "not seen at enough customers "
                                                      "within the window, or suppressed")
    return json_response(api.ClusterView.of(cluster))


@bp.function_name("indicator_lookup")
@bp.route(route="indicators/lookup", methods=["GET"])
def indicator_lookup(req: func.HttpRequest) -> func.HttpResponse:
    reads = services.correlation()
    try:
        indicator, query = api.lookup_query(req.params)
        found, cursor = reads.lookup(indicator, **query)
    except ValidationError as exc:
        return invalid(exc)
    except ValueError:
        return refused(400, *BAD_CURSOR)
    return json_response(api.LookupPage(indicator=api.IndicatorView.of(indicator),
                                        sightings=[api.SightingView.of(s) for s in found],
                                        cursor=cursor))


@bp.function_name("suppressions")
@bp.route(route="suppressions", methods=["GET", "POST", "DELETE"])
def suppressions(req: func.HttpRequest) -> func.HttpResponse:
    reads = services.correlation()
    if req.method == "GET":
        return json_response(api.SuppressionList(
            suppressions=[api.SuppressionView.of(s) for s in reads.suppressions()]))
    actor = api_actor(services.get_settings().api_keys, req.headers.get("X-Api-Key"))
    if actor is None:
        return json_response(UNAUTHORIZED, 401)
    try:
        if req.method == "POST":
            indicator, reason = api.new_suppression(validation.decode_json(req.get_body()))
        else:
            validation.body(validation.NoBody, req.get_body())
            indicator = api.indicator_query(req.params)
    except ValidationError as exc:
        return invalid(exc)
    if req.method == "DELETE":
        removed = reads.unsuppress(indicator, actor.name)
        log.info("suppression of %s removed by key %s: %s", indicator.key, clean(actor.name),
                 removed)
        return json_response(api.SuppressionRemoved(indicator=api.IndicatorView.of(indicator),
                                                    removed=removed))
    known = any(s.indicator == indicator for s in reads.suppressions())
    kept = reads.suppress(indicator, reason, actor.name)
    log.info("%s suppressed by key %s", indicator.key, clean(actor.name))
    return json_response(api.SuppressionView.of(kept), 200 if known else 201)
