"""Notification triggers: notify events in, emails and channel posts out; the rules API
(function key)."""

from __future__ import annotations

import azure.functions as func

from functions.http import invalid, json_response, refused
from functions.queue_messages import parse_or_record
from shared import services, validation
from shared.messages import ChannelPost, queue_events
from shared.model import parse_tenant_id
from shared.notify.rules import (
    GLOBAL,
    ChannelTestResult,
    Rule,
    RuleDeleted,
    RuleTestFailed,
    RuleTestRefused,
    RuleTestSent,
    RuleView,
    parse_rule,
)
from shared.notify.transport import Permanent, Transient
from shared.storage.tables import CHANNEL_QUEUE, NOTIFY_QUEUE
from shared.validation import NoBody, ValidationError

bp = func.Blueprint()


@bp.function_name("notify")
@bp.queue_trigger(arg_name="msg", queue_name=NOTIFY_QUEUE, connection="AzureWebJobsStorage")
def notify(msg: func.QueueMessage) -> None:
    events = parse_or_record(msg, NOTIFY_QUEUE, queue_events)
    if events:
        services.notifier().handle_all(events)  # Transient/Busy raise: the host retries


@bp.function_name("digests")
@bp.timer_trigger(arg_name="timer", schedule="%DIGEST_SCHEDULE%", use_monitor=False)
def digests(timer: func.TimerRequest) -> None:
    """Digests that are due, then ops notices not yet emailed (each on its own)."""
    notifier = services.notifier()
    try:
        notifier.send_digests()
    finally:
        notifier.send_ops_notices()


@bp.function_name("notify_channel")
@bp.queue_trigger(arg_name="msg", queue_name=CHANNEL_QUEUE, connection="AzureWebJobsStorage")
def notify_channel(msg: func.QueueMessage) -> None:
    """One post to one Teams or Slack channel (Unreachable/Busy raise: the host retries)."""
    post = parse_or_record(msg, CHANNEL_QUEUE, ChannelPost.parse)
    if post is not None:
        services.channel_delivery().post(post)


def _scope(req: func.HttpRequest) -> str | func.HttpResponse:
    """The rule partition: a tenant id from the path (its own rules only) or GLOBAL."""
    if "tenant_id" not in req.route_params:
        return GLOBAL
    try:
        tenant_id = parse_tenant_id(req.route_params["tenant_id"])
    except ValueError:
        return refused(400, "invalid tenant", "tenant_id", "must be a GUID")
    if services.tenant_admin().tenants.get(tenant_id) is None:
        return refused(404, "no such tenant", "tenant_id", "not registered")
    return tenant_id


def _saved(req: func.HttpRequest, scope: str, existing: Rule | None = None
           ) -> Rule | func.HttpResponse:
    """Validate the body as a rule and save it, or the 400 naming each bad field."""
    try:
        rule = parse_rule(validation.decode_json(req.get_body()), scope, existing=existing,
                          webhooks=services.webhooks())
    except ValidationError as exc:
        return invalid(exc, "invalid rule")
    return services.notifier().save_rule(rule)


def _no_body(req: func.HttpRequest) -> func.HttpResponse | None:
    """Operations that take no body refuse one (a client sending fields expects them used)."""
    try:
        validation.body(NoBody, req.get_body())
    except ValidationError as exc:
        return invalid(exc)
    return None


def _rules_collection(req: func.HttpRequest) -> func.HttpResponse:
    scope = _scope(req)
    if isinstance(scope, func.HttpResponse):
        return scope
    repo = services.notifier().rules
    if req.method == "GET":
        return json_response([RuleView(r) for r in repo.list(scope)])
    rule = _saved(req, scope)
    if isinstance(rule, func.HttpResponse):
        return rule
    return json_response(RuleView(rule), 201)


def _rule_item(req: func.HttpRequest) -> func.HttpResponse:
    scope = _scope(req)
    if isinstance(scope, func.HttpResponse):
        return scope
    notifier = services.notifier()
    rule = notifier.rules.get(scope, req.route_params.get("rule_id", ""))
    if rule is None:
        return refused(404, "no such rule", "rule_id", "not found in this scope")
    if req.method == "DELETE":
        wrong = _no_body(req)
        if wrong is not None:
            return wrong
        notifier.delete_rule(rule)
        return json_response(RuleDeleted(deleted=rule.id))
    if req.method == "PUT":
        saved = _saved(req, scope, existing=rule)
        if isinstance(saved, func.HttpResponse):
            return saved
        rule = saved
    return json_response(RuleView(rule))


def _rule_test(req: func.HttpRequest) -> func.HttpResponse:
    scope = _scope(req)
    if isinstance(scope, func.HttpResponse):
        return scope
    notifier = services.notifier()
    rule = notifier.rules.get(scope, req.route_params.get("rule_id", ""))
    if rule is None:
        return refused(404, "no such rule", "rule_id", "not found in this scope")
    wrong = _no_body(req)
    if wrong is not None:
        return wrong
    try:
        outcome = notifier.send_test(rule)
    except (Permanent, Transient) as exc:
        return json_response(RuleTestFailed(sent=False, error=str(exc)), 502)
    if outcome.state not in ("sent", "kept"):
        return json_response(RuleTestRefused.model_validate({
            "sent": False, "error": "no valid recipient",
            "errors": [{"field": "recipients", "message": f"{r['address']}: {r['reason']}"}
                       for r in outcome.refused],
            "to": [], "refused": outcome.refused}), 422)
    return json_response(RuleTestSent.model_validate(
        {"sent": True, "to": outcome.to, "refused": outcome.refused,
         "kept_locally": outcome.state == "kept"}))


def _channel_test(req: func.HttpRequest) -> func.HttpResponse:
    scope = _scope(req)
    if isinstance(scope, func.HttpResponse):
        return scope
    rule = services.notifier().rules.get(scope, req.route_params.get("rule_id", ""))
    if rule is None:
        return refused(404, "no such rule", "rule_id", "not found in this scope")
    wrong = _no_body(req)
    if wrong is not None:
        return wrong
    result = services.channel_delivery().test(rule, req.route_params.get("channel", ""))
    if result is None:
        return refused(404, "no such channel", "channel", "not a channel of this rule")
    status = 200 if result.sent else 422 if not result.webhook else 502
    return json_response(ChannelTestResult.model_validate(vars(result)), status)


@bp.function_name("rules_global_channel_test")
@bp.route(route="rules/{rule_id}/channels/{channel}/test", methods=["POST"])
def rules_global_channel_test(req: func.HttpRequest) -> func.HttpResponse:
    return _channel_test(req)


@bp.function_name("rules_tenant_channel_test")
@bp.route(route="tenants/{tenant_id}/rules/{rule_id}/channels/{channel}/test",
          methods=["POST"])
def rules_tenant_channel_test(req: func.HttpRequest) -> func.HttpResponse:
    return _channel_test(req)


@bp.function_name("rules_global_test")
@bp.route(route="rules/{rule_id}/test", methods=["POST"])
def rules_global_test(req: func.HttpRequest) -> func.HttpResponse:
    return _rule_test(req)


@bp.function_name("rules_tenant_test")
@bp.route(route="tenants/{tenant_id}/rules/{rule_id}/test", methods=["POST"])
def rules_tenant_test(req: func.HttpRequest) -> func.HttpResponse:
    return _rule_test(req)


@bp.function_name("rules_global")
@bp.route(route="rules", methods=["GET", "POST"])
def rules_global(req: func.HttpRequest) -> func.HttpResponse:
    return _rules_collection(req)


@bp.function_name("rules_global_item")
@bp.route(route="rules/{rule_id}", methods=["GET", "PUT", "DELETE"])
def rules_global_item(req: func.HttpRequest) -> func.HttpResponse:
    return _rule_item(req)


@bp.function_name("rules_tenant")
@bp.route(route="tenants/{tenant_id}/rules", methods=["GET", "POST"])
def rules_tenant(req: func.HttpRequest) -> func.HttpResponse:
    return _rules_collection(req)


@bp.function_name("rules_tenant_item")
@bp.route(route="tenants/{tenant_id}/rules/{rule_id}", methods=["GET", "PUT", "DELETE"])
def rules_tenant_item(req: func.HttpRequest) -> func.HttpResponse:
    return _rule_item(req)
