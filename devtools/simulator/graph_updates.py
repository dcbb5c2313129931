"""Graph's updates of security alerts and incidents: `PATCH /security/alerts_v2/{id}`,
`POST /security/alerts_v2/{id}/comments` and `PATCH /security/incidents/{id}`: what they
accept, how they refuse, and what an accepted update does. Pure functions.

As Microsoft's "Update alert" (security-alert-update), "Create comment for alert"
(security-alert-post-comments) and "Update incident" (security-incident-update) pages
document them: the updatable alert properties are status, assignedTo, classification and
determination (incidents also customTags), lower camel case enum members; an unknown
property or enum member is 400 BadRequest. Graph documents no classification/
determination pairing for v2 alerts; an endpoint alert changed through Graph is Defender's
alert, so Defender's pairing applies to it (`to_mde` then alert_updates.check_pair).
"""

from __future__ import annotations

from typing import Any

from devtools.simulator.graph_alerts import CLASSIFICATIONS, DETERMINATIONS
from devtools.simulator.graph_incidents import STATUSES as INCIDENT_STATUSES

ALERT_STATUSES = ("new", "inProgress", "resolved")
ALERT_FIELDS = ("status", "assignedTo", "classification", "determination")
INCIDENT_FIELDS = (*ALERT_FIELDS, "customTags")
COMMENT_TYPE = "microsoft.graph.security.alertComment"
MAX_COMMENT = 30_000
# v2 member -> Defender's, where lower camel case to Pascal case is not the answer
_MDE_DETERMINATION = {"notEnoughDataToValidate": "InsufficientData"}


class Invalid(ValueError):
    """A body Graph answers 400 BadRequest to."""


def _enum(name: str, value: Any, members: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in members or value in (
            "unknownFutureValue",):
        raise Invalid(f"Invalid value '{value}' for property '{name}'. Requested value "
                      f"was not found among: {', '.join(members)}.")


def parse_patch(body: Any, incident: bool = False) -> dict[str, Any]:
    """The fields of an alert's (or incident's) PATCH body, or Invalid."""
    if not isinstance(body, dict) or not body:
        raise Invalid("Empty Payload. JSON content expected.")
    allowed = INCIDENT_FIELDS if incident else ALERT_FIELDS
    for name in body:
        if name not in allowed and name != "@odata.type":
            raise Invalid(f"The property '{name}' does not exist on type "
                          f"'microsoft.graph.security.{'incident' if incident else 'alert'}"
                          "' or is not updatable.")
    fields = {k: body[k] for k in allowed if k in body}
    if not fields:
        raise Invalid("The request body has nothing to update.")
    if "status" in fields:
        _enum("status", fields["status"], INCIDENT_STATUSES if incident else ALERT_STATUSES)
    if "classification" in fields:
        _enum("classification", fields["classification"], CLASSIFICATIONS)
    if "determination" in fields:
        _enum("determination", fields["determination"], DETERMINATIONS)
    if "assignedTo" in fields and not (fields["assignedTo"] is None or isinstance(
            fields["assignedTo"], str)):
        raise Invalid("Cannot convert the literal to the expected type 'Edm.String' "
                      "(assignedTo).")
    if "customTags" in fields and not (isinstance(fields["customTags"], list) and all(
            isinstance(t, str) for t in fields["customTags"])):
        raise Invalid("customTags must be a collection of strings.")
    return fields


def parse_comment(body: Any) -> str:
    """The comment of a comments POST body, or Invalid."""
    if not isinstance(body, dict):
        raise Invalid("Empty Payload. JSON content expected.")
    kind = str(body.get("@odata.type") or "").lstrip("#")
    if kind != COMMENT_TYPE:
        raise Invalid(f"The @odata.type must be '{COMMENT_TYPE}'.")
    comment = body.get("comment")
    if not isinstance(comment, str) or not comment.strip():
        raise Invalid("The property 'comment' is required and must not be empty.")
    if len(comment) > MAX_COMMENT:
        raise Invalid(f"The comment is longer than {MAX_COMMENT} characters.")
    return comment


def to_mde(fields: dict[str, Any]) -> dict[str, Any]:
    """v2 fields as Defender's PATCH names them (an endpoint alert is one state)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "assignedTo" or not isinstance(value, str):
            out[name] = value
        elif name == "determination" and value in _MDE_DETERMINATION:
            out[name] = _MDE_DETERMINATION[value]
        else:
            out[name] = value[0].upper() + value[1:]
    return out


def comment_of(text: str, by: str, now: str) -> dict[str, Any]:
    return {"@odata.type": "#" + COMMENT_TYPE, "comment": text, "createdByDisplayName": by,
            "createdDateTime": now}


def applied(raw: dict[str, Any], fields: dict[str, Any], comment: str | None, by: str,
            now: str) -> dict[str, Any]:
    """A v2 alert (or incident) after an accepted update at `now`: a new dict."""
    changed = {**raw, **fields}
    if fields.get("status") == "resolved" and raw.get("status") != "resolved":
        changed["resolvedDateTime"] = now
    elif "status" in fields and fields["status"] != "resolved" and "resolvedDateTime" in raw:
        changed["resolvedDateTime"] = None
    if comment is not None:
        changed["comments"] = [*(raw.get("comments") or []), comment_of(comment, by, now)]
    changed["lastUpdateDateTime"] = now
    return changed
