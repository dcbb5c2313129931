"""The OpenAPI 3.1 document of the app's HTTP API, served at /api/openapi.json.

Kept beside the code it describes; tests/unit/test_openapi.py fails when a route is
added, removed or changes methods without this document following.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from shared import __version__
from shared.alerts.spelling import PRODUCTS
from shared.correlation.api import (
    MAX_REASON,
    ClusterPage,
    ClusterView,
    LookupPage,
    NewSuppression,
    SuppressionList,
    SuppressionRemoved,
    SuppressionView,
)
from shared.correlation.model import KINDS
from shared.notify.rules import (
    ChannelTestResult,
    RuleBody,
    RuleDeleted,
    RuleTestFailed,
    RuleTestRefused,
    RuleTestSent,
    RuleView,
)
from shared.ops.health import HealthReport
from shared.siem.outputs import OutputsReport
from shared.siem.pull import AlertVersion, PullPage
from shared.tenants.admin import Offboard, TenantPatch, TenantView
from shared.tenants.invitations import InvitationView, NewInvitation, Reconsent
from shared.triage.api import (
    AlertChange,
    AuditPage,
    IncidentChange,
    IncidentTriageResult,
    TriageResult,
)
from shared.triage.bulk import MAX_ALERTS
from shared.triage.bulk_api import BulkAccepted, BulkJobView, BulkRequest
from shared.validation import MAX_BODY, ErrorBody, NoBody, Reply

_REF = "#/components/schemas/{model}"
_TENANT_ID = {"name": "tenant_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}}
_INVITATION_ID = {"name": "invitation_id", "in": "path", "required": True,
                  "schema": {"type": "string"}}
_KEY = [{"functionKey": []}]
# the portal: App Service Authentication's principal (a group or app role in the
# settings), or locally the portal key's session cookie
_PORTAL = [{"appServicePrincipal": []}, {"portalSession": []}]


class ApiDocument(Reply):
    """This document, as /api/openapi.json answers it (its schema is OpenAPI's own)."""

    model_config = ConfigDict(frozen=True, extra="allow", title="OpenApiDocument")

    openapi: str
    info: dict[str, Any]
    servers: list[dict[str, Any]]
    paths: dict[str, Any]
    components: dict[str, Any]


# every JSON answer's model: the handlers write these, the schemas below come from them
REPLIES: tuple[type[BaseModel], ...] = (
    ErrorBody, TenantView, InvitationView, RuleView, RuleDeleted, RuleTestSent,
    RuleTestRefused, RuleTestFailed, AlertVersion, PullPage, OutputsReport, HealthReport,
    TriageResult, AuditPage, ApiDocument, BulkAccepted, BulkJobView, ChannelTestResult,
    IncidentTriageResult, ClusterPage, ClusterView, LookupPage, SuppressionView,
    SuppressionList, SuppressionRemoved)


def _reply_schema(model: type[BaseModel]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(component name, its schema, the schemas it refers to) of a response model, as
    the handler serializes it."""
    schema = model.model_json_schema(mode="serialization", ref_template=_REF)
    defs = schema.pop("$defs", {})
    return str(model.model_config.get("title") or model.__name__), schema, defs


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=_reply_schema(model)[0])}


def _json(schema: type[BaseModel] | dict[str, Any], description: str) -> dict[str, Any]:
    """A JSON answer: a response model, or an array of one."""
    if not isinstance(schema, dict):
        schema = _ref(schema)
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _list(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": _ref(model)}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {400: "invalid input; `errors` names each field", 401: "missing or wrong key",
               404: "not found", 409: "not possible in the current status",
               413: f"the body is larger than {MAX_BODY} bytes (`errors` names `body`)"}
    return {str(code): _json(ErrorBody, meaning[code]) if code != 401 else
            {"description": meaning[code]} for code in codes}


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """A JSON request body checked by `model` (its schema is generated from it)."""
    return {"required": required, "content": {"application/json": {
        "schema": {"$ref": _REF.format(model=model.__name__)}}}}


_NO_BODY = {**_body(NoBody, required=False),
            "description": "none, or `{}`; anything else is refused (400 naming it)"}


def _without_null_defaults(schema: Any) -> Any:
    """pydantic writes `default: null` for fields that are optional but never null."""
    if isinstance(schema, dict):
        return {k: _without_null_defaults(v) for k, v in schema.items()
                if not (k == "default" and v is None and "anyOf" not in schema)}
    if isinstance(schema, list):
        return [_without_null_defaults(v) for v in schema]
    return schema


def _model_schemas() -> dict[str, Any]:
    """Request bodies from the pydantic models that check them, answers from the models
    the handlers write them with."""
    out: dict[str, Any] = {}
    for model in (NewInvitation, Reconsent, RuleBody, TenantPatch, Offboard, NoBody,
                  AlertChange, IncidentChange, BulkRequest, NewSuppression):
        schema = model.model_json_schema(mode="validation", ref_template=_REF)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    for model in REPLIES:
        name, schema, defs = _reply_schema(model)
        out.update(defs)
        out[name] = schema
    return _without_null_defaults(out)


def _rule_paths(base: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    body = _body(RuleBody)
    scope = "the tenant's own" if params else "MSSP-wide"
    bad_id = (400,) if params else ()  # a tenant id that is not a GUID
    rule_id = {"name": "rule_id", "in": "path", "required": True,
               "schema": {"type": "string"}}
    return {
        base: {**({"parameters": params} if params else {}),
               "get": {"summary": f"List {scope} notification rules", "security": _KEY,
                       "responses": {"200": _json(_list(RuleView), "rules"),
                                     **_errors(*bad_id, 401, 404)}},
               "post": {"summary": f"Create a {scope} rule", "security": _KEY,
                        "requestBody": body,
                        "responses": {"201": _json(RuleView, "created"),
                                      **_errors(400, 401, 404, 413)}}},
        f"{base}/{{rule_id}}": {
            "parameters": [*params, rule_id],
            "get": {"summary": "One rule", "security": _KEY,
                    "responses": {"200": _json(RuleView, "the rule"),
                                  **_errors(*bad_id, 401, 404)}},
            "put": {"summary": "Replace a rule (recipients keep when they were added)",
                    "security": _KEY, "requestBody": body,
                    "responses": {"200": _json(RuleView, "updated"),
                                  **_errors(400, 401, 404, 413)}},
            "delete": {"summary": "Delete a rule", "security": _KEY, "requestBody": _NO_BODY,
                       "responses": {"200": _json(RuleDeleted, "deleted"),
                                     **_errors(400, 401, 404, 413)}}},
        f"{base}/{{rule_id}}/test": {
            "parameters": [*params, rule_id],
            "post": {"summary": "Send a test email to the rule's recipients", "security": _KEY,
                     "requestBody": _NO_BODY,
                     "responses": {"200": _json(RuleTestSent, "sent (or kept in MailOutbox with "
                                                      "MAIL_TRANSPORT=none); `refused` lists "
                                                      "each address left out and why"),
                                   "422": _json(RuleTestRefused,
                                                "no recipient is a valid address"),
                                   "502": _json(RuleTestFailed, "the mail server refused"),
                                   **_errors(400, 401, 404, 413)}}},
        f"{base}/{{rule_id}}/channels/{{channel}}/test": {
            "parameters": [*params, rule_id, {"name": "channel", "in": "path",
                                              "required": True, "schema": {"type": "string"}}],
            "post": {"summary": "Post a sample alert to one of the rule's Teams or Slack "
                                "channels (a success clears its failing mark)",
                     "security": _KEY, "requestBody": _NO_BODY,
                     "responses": {"200": _json(ChannelTestResult, "posted"),
                                   "422": _json(ChannelTestResult, "the channel's app setting "
                                                "is missing or not a webhook of its platform"),
                                   "502": _json(ChannelTestResult, "the platform refused, "
                                                "rate-limited or did not answer"),
                                   **_errors(400, 401, 404, 413)}}},
    }


def _siem_paths() -> dict[str, Any]:
    listed = {"name": "x", "in": "query", "required": False,
              "schema": {"type": "string"}, "description": "comma-separated"}
    params = [
        {**listed, "name": "tenant", "description": "tenant ids, comma-separated"},
        {**listed, "name": "severity", "description": "UnSpecified, Informational, Low, "
                                                      "Medium, High; comma-separated"},
        {**listed, "name": "status", "description": "Unknown, New, InProgress, Resolved"},
        {**listed, "name": "product", "description": "the products' Graph serviceSource "
                                                     "values (as rules take them), "
                                                     "comma-separated: "
                                                     f"{', '.join(PRODUCTS)}; alerts only"},
        {**listed, "name": "type", "description": "alert, incident; comma-separated"},
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"},
         "description": "lastUpdateTime at or after"},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"},
         "description": "lastUpdateTime at or before"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": 1000, "default": 200}},
        {"name": "format", "in": "query", "schema": {"enum": ["json", "ndjson"]}},
        {"name": "continuation", "in": "query", "schema": {"type": "string"},
         "description": "the token of the previous answer, with the same filters"}]
    return {
        "/api/siem/alerts": {"get": {
            "summary": "Alert versions across tenants in a stable order; poll with the "
                       "continuation token to see each version once",
            "security": _KEY, "parameters": params,
            "responses": {"200": {"description": "a page; the token is also in X-Continuation",
                                  "content": {"application/json": {"schema": _ref(PullPage)},
                                              "application/x-ndjson": {
                                                  "schema": {"type": "string"}}}},
                          **_errors(400, 401)}}},
        "/api/siem/outputs": {"get": {
            "summary": "Each push output's position, lag and last error", "security": _KEY,
            "responses": {"200": _json(OutputsReport, "outputs"), **_errors(401)}}},
    }


def _triage_paths() -> dict[str, Any]:
    """Acting on one alert (a named automation key too) and reading the audit trail."""
    alert = [_TENANT_ID, {"name": "alert_id", "in": "path", "required": True,
                          "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:=-]{1,200}$"}}]
    headers = [
        {"name": "If-Match", "in": "header", "schema": {"type": "string"},
         "description": "the alert's lastUpdateTime as the caller saw it: a change made "
                        "since in Defender answers 412 with the current alert"},
        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string",
                                                                "maxLength": 200},
         "description": "names this request: sent again, its recorded answer comes back "
                        "and Defender is not asked twice"}]
    outcome = _json(TriageResult, "")
    incident = _json(IncidentTriageResult, "")
    entries = _json(AuditPage, "audit entries, newest first")
    text = {"name": "x", "in": "query", "schema": {"type": "string"}}
    return {
        "/api/tenants/{tenant_id}/alerts/{alert_id}": {
            "parameters": alert,
            "patch": {"summary": "Change an alert in the tenant's Defender (status, "
                                 "assignment, classification and determination, comment); "
                                 "recorded in the audit trail under the key's name",
                      "security": [{"functionKey": [], "automationKey": []}],
                      "parameters": headers, "requestBody": _body(AlertChange),
                      "responses": {
                          "200": {**outcome, "description": "done: the alert as Defender "
                                                            "answered it"},
                          "412": {**outcome, "description": "conflict: changed in Defender "
                                                            "since If-Match; nothing sent"},
                          "403": {**outcome, "description": "refused: the tenant is not "
                                                            "active or granted read only"},
                          "429": {**outcome, "description": "throttled by Defender; see "
                                                            "Retry-After"},
                          "502": {**outcome, "description": "failed: Defender refused or "
                                                            "did not answer (`detail`)"},
                          **_errors(400, 401, 404, 413)}}},
        "/api/tenants/{tenant_id}/incidents/{incident_id}": {
            "parameters": [_TENANT_ID, {"name": "incident_id", "in": "path",
                                        "required": True, "schema": {
                                            "type": "string",
                                            "pattern": "^[A-Za-z0-9_.:=-]{1,200}$"}}],
            "patch": {"summary": "Change a graph tenant's incident through Microsoft Graph "
                                 "(status Active/InProgress/Resolved, assignment, "
                                 "classification and determination, comment); recorded in "
                                 "the audit trail under the key's name",
                      "security": [{"functionKey": [], "automationKey": []}],
                      "parameters": [{**headers[0], "description": "the incident's "
                                      "lastUpdateDateTime as the caller saw it: a change "
                                      "made since answers 412 with the current incident"},
                                     headers[1]],
                      "requestBody": _body(IncidentChange),
                      "responses": {
                          "200": {**incident, "description": "done: the incident as Graph "
                                                             "answered it"},
                          "412": {**incident, "description": "conflict: changed since "
                                                             "If-Match; nothing sent"},
                          "403": {**incident, "description": "refused: the tenant is not "
                                                             "active, not a graph tenant, "
                                                             "or granted read only"},
                          "429": {**incident, "description": "throttled by Graph; see "
                                                             "Retry-After"},
                          "502": {**incident, "description": "failed: Graph refused or did "
                                                             "not answer (`detail`)"},
                          **_errors(400, 401, 404, 413)}}},
        "/api/tenants/{tenant_id}/alerts/{alert_id}/audit": {
            "parameters": alert,
            "get": {"summary": "The alert's audit entries, newest first", "security": _KEY,
                    "responses": {"200": entries, **_errors(400, 401)}}},
        "/api/audit": {"get": {
            "summary": "The audit trail, newest first, filtered; keyset pages",
            "security": _KEY,
            "parameters": [
                {**text, "name": "tenant", "description": "a tenant id"},
                {**text, "name": "actor", "description": "object id or API key name"},
                {"name": "outcome", "in": "query", "schema": {"enum": [
                    "done", "conflict", "refused", "throttled", "failed"]}},
                {"name": "since", "in": "query", "schema": {"type": "string",
                                                            "format": "date-time"}},
                {"name": "until", "in": "query", "schema": {"type": "string",
                                                            "format": "date-time"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": 200, "default": 50}},
                {**text, "name": "continuation",
                 "description": "the previous page's, with the same filters"}],
            "responses": {"200": entries, **_errors(400, 401)}}},
    }


def _bulk_paths() -> dict[str, Any]:
    """Bulk triage: one change to many alerts across tenants, as a job."""
    job_id = {"name": "job_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
    return {
        "/api/alerts/bulk": {"post": {
            "summary": f"Apply one change to the listed alerts, or to every alert matching "
                       f"the alerts page's filter (at most {MAX_ALERTS:,}); each tenant's "
                       f"part runs within its Defender budget", "security": _KEY,
            "requestBody": _body(BulkRequest),
            "responses": {"202": _json(BulkAccepted, "queued; progress at `status_url`"),
                          **_errors(400, 401, 413)}}},
        "/api/alerts/bulk/{job_id}": {
            "parameters": [job_id],
            "get": {"summary": "A bulk job's progress, each tenant's part and one page of "
                               "per-alert outcomes", "security": _KEY,
                    "parameters": [{"name": "after", "in": "query",
                                    "schema": {"type": "string"},
                                    "description": "the `next` of the previous page"},
                                   {"name": "limit", "in": "query", "schema": {
                                       "type": "integer", "minimum": 1, "maximum": 1000,
                                       "default": 100}}],
                    "responses": {"200": _json(BulkJobView, "the job"),
                                  **_errors(400, 401, 404)}}},
    }


def _correlation_paths() -> dict[str, Any]:
    """Indicators seen at several customers (MSSP-only): clusters, lookup, suppressions.
    A change also takes a named automation key, the suppression's author."""
    text = {"in": "query", "required": False, "schema": {"type": "string"}}
    value = {**text, "name": "value", "required": True,
             "description": "a hash, IP address, domain, URL or file name"}
    kind = {**text, "name": "kind", "schema": {"enum": ["", *KINDS]},
            "description": "detected when left out; file_name must be given"}
    cursor = {**text, "name": "cursor", "description": "the previous answer's cursor"}
    named = [{"functionKey": [], "automationKey": []}]
    return {
        "/api/clusters": {"get": {
            "summary": "Indicators seen at several customers within the window, most recent "
                       "or widest reach first, a page at a time", "security": _KEY,
            "parameters": [{**text, "name": "order", "schema": {"enum": ["", "recent",
                                                                          "reach"]}},
                           cursor, {**text, "name": "limit", "description": "1 to 200"}],
            "responses": {"200": _json(ClusterPage, "clusters"), **_errors(400, 401)}}},
        "/api/clusters/{kind}": {
            "parameters": [{"name": "kind", "in": "path", "required": True,
                            "schema": {"type": "string"}, "description": ", ".join(KINDS)}],
            "get": {"summary": "The cluster of one indicator, with every tenant's part",
                    "security": _KEY, "parameters": [value],
                    "responses": {"200": _json(ClusterView, "the cluster"),
                                  **_errors(400, 401, 404)}}},
        "/api/indicators/lookup": {"get": {
            "summary": "Every tenant and alert that has an indicator, newest first",
            "security": _KEY,
            "parameters": [value, kind, {**text, "name": "since",
                                         "description": "sightings at or after (ISO 8601)"},
                           cursor, {**text, "name": "limit", "description": "1 to 500"}],
            "responses": {"200": _json(LookupPage, "sightings"), **_errors(400, 401)}}},
        "/api/suppressions": {
            "get": {"summary": "Indicators declared benign: they form no cluster",
                    "security": _KEY,
                    "responses": {"200": _json(SuppressionList, "newest first"),
                                  **_errors(401)}},
            "post": {"summary": f"Suppress an indicator (a reason of up to {MAX_REASON} "
                                "characters; the author is the key's name); again: the "
                                "first record stays", "security": named,
                     "requestBody": _body(NewSuppression),
                     "responses": {"201": _json(SuppressionView, "suppressed"),
                                   "200": _json(SuppressionView, "already suppressed"),
                                   **_errors(400, 401, 413)}},
            "delete": {"summary": "Remove a suppression", "security": named,
                       "parameters": [value, kind], "requestBody": _NO_BODY,
                       "responses": {"200": _json(SuppressionRemoved,
                                                  "removed (or `removed: false`: it was "
                                                  "not suppressed)"),
                                     **_errors(400, 401, 413)}}},
    }


def _with_responses(operation: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    return {**operation, "responses": {**operation["responses"], **more}}


def _portal_paths() -> dict[str, Any]:
    """The portal's HTML pages; forms post urlencoded fields with a `csrf` token."""
    refused = {"401": _html("nobody signed in"), "403": _html("not an allowed group or "
                                                              "role, or a bad CSRF token"),
               "421": _html("asked for another host than PUBLIC_BASE_URL's: a link to it")}
    form = {"required": True, "content": {"application/x-www-form-urlencoded": {
        "schema": {"type": "object", "required": ["csrf"],
                   "properties": {"csrf": {"type": "string"}}}}}}
    moved = {"303": {"description": "done; to the page to show next"}}

    def page(summary: str, **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "security": _PORTAL,
                "responses": {"200": _html(summary), **refused}, **extra}

    def change(summary: str) -> dict[str, Any]:
        return {"summary": summary, "security": _PORTAL, "requestBody": form,
                "responses": {**moved, **refused, "404": _html("no such tenant, rule or "
                                                               "action")}}

    query = [{"name": n, "in": "query", "schema": {"type": "string"}} for n in (
        "tenant", "severity", "status", "category", "device_group", "range", "before")]
    action = {"name": "action", "in": "path", "required": True, "schema": {"type": "string"}}
    alert_id = {"name": "alert_id", "in": "path", "required": True,
                "schema": {"type": "string"}}
    return {
        "/api/portal": {"get": page("Overview: every tenant's health and open alerts")},
        "/api/portal/alerts": {"get": page("Alerts across tenants, filtered, newest first",
                                           parameters=query)},
        "/api/portal/incidents": {"get": page(
            "Incidents of graph tenants across tenants, newest update first",
            parameters=[{"name": n, "in": "query", "schema": {"type": "string"}}
                        for n in ("tenant", "severity", "status", "after")])},
        "/api/portal/incidents/{tenant_id}/{incident_id}": {"get": _with_responses(page(
            "An incident with links to its alerts' pages",
            parameters=[{"name": n, "in": "path", "required": True,
                         "schema": {"type": "string"}} for n in ("tenant_id",
                                                                   "incident_id")]),
            {"404": _html("no such tenant or incident")})},
        "/api/portal/clusters": {"get": _with_responses(page(
            "Indicators seen at several customers, most recent or widest reach first",
            parameters=[{"name": n, "in": "query", "schema": {"type": "string"}}
                        for n in ("order", "cursor")]),
            {"400": _html("a cursor this portal never gave"),
             "404": _html("correlation is not wired in this deployment")})},
        "/api/portal/clusters/{kind}": {
            "parameters": [{"name": "kind", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "get": _with_responses(page(
                "One indicator's cluster: every customer and its alerts",
                parameters=[{"name": "value", "in": "query", "schema": {"type": "string"}}]),
                {"400": _html("the value is not an indicator of that kind; the page says why"),
                 "404": _html("not a cluster now, or no such kind")})},
        "/api/portal/lookup": {"get": _with_responses(page(
            "Find an indicator (a pasted hash, IP, domain, URL): every customer and alert "
            "that has it", parameters=[{"name": n, "in": "query", "schema": {"type": "string"}}
                                       for n in ("q", "kind", "cursor")]),
            {"400": _html("not an indicator (the page says why), or a cursor this portal "
                          "never gave"),
             "404": _html("correlation is not wired in this deployment")})},
        "/api/portal/suppressions": {
            "get": _with_responses(page(
                "Suppressed indicators, with a form to suppress one",
                parameters=[{"name": n, "in": "query", "schema": {"type": "string"}}
                            for n in ("value", "kind", "done")]),
                {"404": _html("correlation is not wired in this deployment")}),
            "post": {**change("Suppress an indicator (`value`, `kind`, `reason`; the author is "
                              "the signed-in user)"), "responses": {
                **moved, **refused, "400": _html("not an indicator, or no reason: the page "
                                                 "says which"),
                "404": _html("correlation is not wired in this deployment")}}},
        "/api/portal/suppressions/remove": {
            "post": change("Remove a suppression (`value`, `kind`)")},
        "/api/portal/incidents/{tenant_id}/{incident_id}/{action}": {
            "parameters": [*({"name": n, "in": "path", "required": True,
                              "schema": {"type": "string"}} for n in ("tenant_id",
                                                                      "incident_id")),
                           {**action, "schema": {
                               "enum": ["assign", "status", "classify", "comment"]}}],
            "post": {"summary": "Act on a graph tenant's incident through Microsoft Graph "
                                "(fields `seen_version` and `nonce` as the form was "
                                "rendered with); the page shows the outcome",
                     "security": _PORTAL, "requestBody": form, "responses": {
                         "200": _html("done: the incident as Graph answered"),
                         "400": _html("a field is wrong (or a pair refused): nothing sent"),
                         **refused, "404": _html("no such tenant, incident or action"),
                         "409": _html("changed since the page was rendered: not "
                                      "overwritten, the new state shown"),
                         "429": _html("Graph throttled the tenant: retry later"),
                         "502": _html("Graph failed")}}},
        "/api/portal/bulk": {"post": {
            **change(f"Start a bulk action: the checked alerts (`sel`: tenant|alert) or every "
                     f"alert matching the filter (`scope=filter`, `f_*`; at most "
                     f"{MAX_ALERTS:,}), with status, classify, assigned_to, comment"),
            "responses": {"303": {"description": "started; to the job's page"}, **refused,
                          "400": _html("the change is not valid, nothing is selected, or "
                                       "too many alerts; the page says which")}}},
        "/api/portal/bulk/{job_id}": {
            "parameters": [{"name": "job_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "get": {**page("A bulk action's progress and each alert's outcome",
                           parameters=[{"name": "after", "in": "query",
                                        "schema": {"type": "string"}}]),
                    "responses": {"200": _html("the job"), **refused,
                                  "404": _html("no such job")}}},
        "/api/portal/tenants/{tenant_id}": {"parameters": [_TENANT_ID], "get": {**page(
            "A tenant: details, runs, rules, notifications, invitations"), "responses": {
            "200": _html("the tenant"), **refused, "404": _html("no such tenant")}}},
        "/api/portal/tenants/{tenant_id}/{action}": {
            "parameters": [_TENANT_ID, {**action, "schema": {
                "enum": ["pause", "resume", "offboard", "reconsent", "rules",
                         "move-to-graph"]}}],
            "post": {**change("Pause, resume, offboard, make a re-consent invitation, or "
                              "create a notification rule (`rules`: the rule form's fields)"),
                     "responses": {
                **moved, **refused, "400": _html("a field is wrong; the page says which"),
                "404": _html("no such tenant"),
                "409": _html("not possible in the current status")}}},
        "/api/portal/tenants/{tenant_id}/alerts/{alert_id}": {
            "parameters": [_TENANT_ID, alert_id], "get": {**page(
                "One alert: details, evidence, versions, emails, SIEM entries, audit, and "
                "the action forms"), "responses": {
                "200": _html("the alert"), **refused,
                "404": _html("no such tenant, or the alert is not stored")}}},
        "/api/portal/tenants/{tenant_id}/alerts/{alert_id}/{action}": {
            "parameters": [_TENANT_ID, alert_id, {**action, "schema": {
                "enum": ["assign", "status", "classify", "comment"]}}],
            "post": {"summary": "Act on the alert in the tenant's Defender (fields "
                                "`seen_version` and `nonce` as the form was rendered with); "
                                "the page shows the outcome", "security": _PORTAL,
                     "requestBody": form, "responses": {
                "200": _html("done: the alert as Defender answered"),
                "400": _html("a field is wrong (or a pair Defender refuses): nothing sent"),
                **refused, "404": _html("no such tenant, alert or action"),
                "409": _html("changed in Defender since the page was rendered: not "
                             "overwritten, the new state shown"),
                "429": _html("the tenant's Defender budget is spent: retry later"),
                "502": _html("Defender failed"),
                "503": _html("acting is not available in this deployment")}}},
        "/api/portal/audit": {"get": _with_responses(page(
            "The audit trail of actions on alerts, filtered, a page at a time",
            parameters=[{"name": n, "in": "query", "schema": {"type": "string"}} for n in (
                "tenant", "analyst", "outcome", "since", "until", "continuation")]),
            {"400": _html("a continuation this portal never gave")})},
        "/api/portal/rules/{scope}/{rule_id}/{action}": {
            "parameters": [{"name": "scope", "in": "path", "required": True,
                            "schema": {"type": "string"},
                            "description": "a tenant id, or `global`"},
                           {"name": "rule_id", "in": "path", "required": True,
                            "schema": {"type": "string"}},
                           {**action, "schema": {"enum": ["enable", "disable", "delete",
                                                          "save"]}}],
            "post": {**change("Enable, disable, delete or edit (`save`: the rule form's "
                              "fields) a notification rule"), "responses": {
                **moved, **refused, "400": _html("a field is wrong; the page says which"),
                "404": _html("no such tenant, rule or action")}}},
        "/api/portal/invitations/{invitation_id}/{action}": {
            "parameters": [{"name": "invitation_id", "in": "path", "required": True,
                            "schema": {"type": "string"}},
                           {**action, "schema": {"enum": ["revoke"]}}],
            "post": change("Revoke an open invitation (its link stops working)")},
        "/api/portal/invitations": {
            "get": page("Invitations, with a form for a new one"),
            "post": {**change("Create an invitation"), "responses": {
                **moved, **refused, "400": _html("a field is wrong; the form says which")}}},
        "/api/portal/outbox": {"get": {**page("Emails in MailOutbox (local portal only)"),
                                       "responses": {"200": _html("emails"), **refused,
                                                     "404": _html("not local")}}},
        "/api/portal/login": {
            "get": {"summary": "Local key login form; `?key=` signs in at once",
                    "security": [], "responses": {
                        "200": _html("the form"),
                        "303": {"description": "signed in: session cookie set"},
                        "404": _html("key login is off (PORTAL_KEY unset)"),
                        "421": refused["421"]}},
            "post": {"summary": "Sign in with the portal key", "security": [],
                     "requestBody": {"required": True, "content": {
                         "application/x-www-form-urlencoded": {"schema": {
                             "type": "object", "properties": {"key": {"type": "string"}}}}}},
                     "responses": {"303": {"description": "signed in: session cookie set"},
                                   "200": _html("no key given: the form again"),
                                   "401": _html("wrong key"),
                                   "403": _html("not posted from the portal's own page"),
                                   "404": _html("key login is off"),
                                   "421": refused["421"]}}},
    }


def document(server_url: str = "/") -> dict[str, Any]:
    tenant, invitation = TenantView, InvitationView
    return {
        "openapi": "3.1.0",
        "info": {"title": "mssp-hub", "version": __version__,
                 "description": "Admin, onboarding and health API of mssp-hub. Keys: "
                                "x-functions-key header or code query parameter."},
        "servers": [{"url": server_url}],
        "paths": {
            "/api/health": {"get": {
                "summary": "Storage reachability, versions, ingestion summary",
                "security": [], "responses": {
                    "200": _json(HealthReport,
                                 "healthy, or degraded with `reasons` (storage answers)"),
                    "503": _json(HealthReport, "unhealthy")}}},
            "/api/openapi.json": {"get": {
                "summary": "This document", "security": [],
                "responses": {"200": _json(ApiDocument, "OpenAPI 3.1")}}},
            "/api/onboard/{invitation_id}": {
                "parameters": [_INVITATION_ID],
                "get": {"summary": "The invitation page a customer's admin opens",
                        "security": [], "responses": {"200": _html("invitation"),
                                                      "404": _html("unknown or expired")}},
                "post": {"summary": "Start sign-in with admin consent (303 to Entra ID)",
                         "security": [],
                         "responses": {"303": {"description": "to Entra's authorize page "
                                                              "(code, PKCE, nonce)"},
                                       "404": _html("unknown or expired")}}},
            "/api/consent/callback": {"get": {
                "summary": "Entra ID's redirect after sign-in and admin consent",
                "security": [],
                "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                               for n in ("state", "code", "session_state", "error",
                                         "error_description")],
                "responses": {str(c): _html(d) for c, d in (
                    (200, "connected, already connected, or consent declined"),
                    (400, "bad or expired request, or the ID token is not valid"),
                    (403, "wrong tenant, or the MSSP's own tenant"),
                    (409, "state already used, or a known tenant without a re-consent "
                          "invitation"),
                    (422, "no Defender for Endpoint"), (503, "Defender did not answer"))}}},
            "/api/invitations": {
                "post": {"summary": "Create an invitation", "security": _KEY,
                         "requestBody": _body(NewInvitation),
                         "responses": {"201": _json(invitation, "created, with its link"),
                                       **_errors(400, 401, 413)}},
                "get": {"summary": "List invitations", "security": _KEY,
                        "responses": {"200": _json(_list(invitation),
                                                   "newest first"), **_errors(401)}}},
            "/api/invitations/{invitation_id}": {
                "parameters": [_INVITATION_ID],
                "delete": {"summary": "Revoke an open invitation", "security": _KEY,
                           "requestBody": _NO_BODY,
                           "responses": {"200": _json(invitation, "revoked"),
                                         **_errors(400, 401, 404, 413)}}},
            "/api/tenants": {"get": {
                "summary": "Tenants with status and health, failing first", "security": _KEY,
                "responses": {"200": _json(_list(tenant), "tenants"),
                              **_errors(401)}}},
            "/api/tenants/{tenant_id}": {
                "parameters": [_TENANT_ID],
                "get": {"summary": "One tenant", "security": _KEY,
                        "responses": {"200": _json(tenant, "the tenant"),
                                      **_errors(400, 401, 404)}},
                "patch": {"summary": "Rename or set the region; only the fields given "
                                     "change (`{}` changes nothing)", "security": _KEY,
                          "requestBody": _body(TenantPatch),
                          "responses": {"200": _json(tenant, "updated"),
                                        **_errors(400, 401, 404, 413)}}},
            "/api/tenants/{tenant_id}/invitations": {
                "parameters": [_TENANT_ID],
                "post": {"summary": "A re-consent invitation only this tenant can use "
                                    "(how a paused, offboarded, revoked or unavailable "
                                    "tenant comes back by consent, or an active one "
                                    "changes its `access`: read-only or triage)",
                         "security": _KEY,
                         "requestBody": _body(Reconsent, required=False),
                         "responses": {"201": _json(invitation, "created, with its link"),
                                       **_errors(400, 401, 404, 409, 413)}}},
            "/api/tenants/{tenant_id}/{action}": {
                "parameters": [_TENANT_ID, {"name": "action", "in": "path", "required": True,
                                            "schema": {"enum": ["pause", "resume",
                                                                "offboard",
                                                                "move-to-graph"]}}],
                "post": {"summary": "Pause, resume, offboard, or move to graph",
                         "description": "move-to-graph: an active mde tenant is fetched "
                                        "from Microsoft Graph's alerts_v2 from its next run "
                                        "(no alert lost or repeated), once a Graph token "
                                        "and one alerts_v2 call show the permissions are "
                                        "granted; else 409: send a re-consent invitation "
                                        "with `source` graph",
                         "security": _KEY,
                         "requestBody": {**_body(Offboard, required=False),
                                         "description": "offboard only; the others take "
                                                        "none, or `{}`"},
                         "responses": {"200": _json(tenant, "the tenant after the change "
                                                            "(offboard: with alerts_deleted)"),
                                       **_errors(400, 401, 404, 409, 413)}}},
            **_rule_paths("/api/rules", []),
            **_rule_paths("/api/tenants/{tenant_id}/rules", [_TENANT_ID]),
            **_siem_paths(),
            **_bulk_paths(),
            **_portal_paths(),
            **_triage_paths(),
            **_correlation_paths(),
        },
        "components": {
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "automationKey": {
                    "type": "apiKey", "in": "header", "name": "X-Api-Key",
                    "description": "A key named in MSSP_API_KEYS (by its SHA-256): the "
                                   "audit trail records its name"},
                "appServicePrincipal": {
                    "type": "apiKey", "in": "header", "name": "X-MS-CLIENT-PRINCIPAL",
                    "description": "Set by App Service Authentication (Entra ID) after "
                                   "sign-in; must carry a group or app role the settings "
                                   "allow"},
                "portalSession": {"type": "apiKey", "in": "cookie", "name": "mssp_portal",
                                  "description": "Local only: set by /api/portal/login"}},
            "schemas": _model_schemas(),
        },
    }
