"""A triage Change of a graph tenant's incident, between the hub's spelling (the forms,
the API and the audit trail speak Defender's Pascal case, as for alerts) and Graph's
(`PATCH /security/incidents/{id}`: lower camel case, the incident's own statuses).

Graph's incident statuses are active, inProgress, resolved, redirected and
awaitingAction; the hub sets the first three (redirecting is Defender XDR's own merge of
incidents, and awaitingAction is set by automated investigation). Classification and
determination are the alert's enums and pairs (graph_change.py), validated before any
call.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared import timefmt
from shared.alerts import spelling
from shared.triage import graph_change
from shared.triage.model import Change

STATUSES = ("Active", "InProgress", "Resolved")
VERSION = "lastUpdateDateTime"
# Graph's incident status -> the hub's spelling (what before/after and the page show)
STATUS = {"active": "Active", "inProgress": "InProgress", "resolved": "Resolved",
          "redirected": "Redirected", "awaitingAction": "AwaitingAction",
          "unknownFutureValue": "Unknown"}


def validated(change: Change) -> Change:
    """The change, or InvalidChange naming the first bad field (an incident's statuses)."""
    return change.validate(STATUSES)


def patch_body(change: Change) -> dict[str, Any]:
    """Graph's PATCH body of the incident ({} for a comment alone)."""
    return graph_change.patch_body(change)


def fields_of(incident: dict[str, Any]) -> dict[str, Any]:
    """An incident's triage fields (Graph's JSON) in the hub's spelling, with its version:
    what an audit entry keeps before and after."""
    status = incident.get("status")
    found: dict[str, Any] = {
        "status": STATUS.get(status, status) if isinstance(status, str) else None,
        "assignedTo": incident.get("assignedTo"),
        "classification": spelling.CLASSIFICATION.get(str(incident.get("classification"))),
        "determination": spelling.DETERMINATION.get(str(incident.get("determination"))),
        "lastUpdateDateTime": incident.get(VERSION)}
    return {k: v for k, v in found.items() if v is not None}


def stored_fields(status: str, assignee: str, classification: str, determination: str,
                  version: str) -> dict[str, Any]:
    """The same of the hub's stored incident row (Graph's values as fetched)."""
    return fields_of({"status": status, "assignedTo": assignee or None,
                      "classification": classification, "determination": determination,
                      VERSION: version})


def reflected(incident: dict[str, Any], change: Change, since: datetime,
              skew: timedelta) -> bool:
    """Whether Graph's incident already shows the change (each field as asked, and the
    comment among those added since the first attempt): an earlier attempt sent it."""
    if any(incident.get(name) != value for name, value in patch_body(change).items()):
        return False
    if change.comment is None:
        return True
    for comment in incident.get("comments") or []:
        if not isinstance(comment, dict) or comment.get("comment") != change.comment:
            continue
        try:
            added = timefmt.to_datetime(timefmt.normalize(str(
                comment.get("createdDateTime"))))
        except ValueError:
            continue
        if added >= since - skew:
            return True
    return False


def compact(incident: dict[str, Any]) -> dict[str, Any]:
    """The incident as an audit entry keeps Graph's answer: without its alerts, and only
    its triage fields and last comments when it is large."""
    kept = {k: v for k, v in incident.items() if k not in ("alerts", "@odata.context")}
    if len(str(kept)) > 8_000:
        kept = {"id": incident.get("id"), **fields_of(incident),
                "comments": (incident.get("comments") or [])[-3:]}
    return kept
