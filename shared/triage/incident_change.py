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

from typing import Any

from shared.alerts import spelling
from shared.triage import graph_change, model
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


# Graph's incident shows a change as its alert does: the PATCH's fields as asked, and the
# comment among those added since the first attempt (createdDateTime)
reflected = graph_change.reflected


def compact(incident: dict[str, Any]) -> dict[str, Any]:
    """The incident as an audit entry keeps Graph's answer (without its alerts)."""
    return model.compact(incident, ("alerts",), fields_of)
