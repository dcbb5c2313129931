"""A triage Change (Defender's spelling, as the forms, the API and the audit trail speak)
for a `graph` tenant: Graph's PATCH body of alerts_v2, and a Graph alert read back in
Defender's spelling, so one audit trail and one set of own-change marks serve both.

Graph's values are lower camel case; four determinations have other names in the v2 enum
(Graph's alertDetermination: compromisedAccount, notMalicious, notEnoughDataToValidate,
confirmedUserActivity). Graph documents no classification/determination pairing, so the
Change keeps Defender's (validated before any call).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared import timefmt
from shared.alerts import spelling
from shared.alerts.view import mde_shaped
from shared.triage.model import Change

GRAPH = "graph"
# Defender's determination -> Graph's, where lower camel case is not the answer
DETERMINATION = {"CompromisedUser": "compromisedAccount", "Clean": "notMalicious",
                 "InsufficientData": "notEnoughDataToValidate",
                 "ConfirmedActivity": "confirmedUserActivity"}
VERSION = "lastUpdateDateTime"


def _camel(value: str) -> str:
    return value[:1].lower() + value[1:]


def patch_body(change: Change) -> dict[str, Any]:
    """Graph's PATCH body for the change's fields ({} for a comment alone)."""
    body: dict[str, Any] = {}
    if change.status is not None:
        body["status"] = _camel(change.status)
    if change.assigned_to is not None:
        body["assignedTo"] = change.assigned_to
    if change.classification is not None:
        body["classification"] = _camel(change.classification)
    if change.determination is not None:
        body["determination"] = DETERMINATION.get(change.determination,
                                                  _camel(change.determination))
    return body


def canonical(change: Change) -> dict[str, Any]:
    """The fields the change sets as the hub stores a Graph alert's (Defender's spelling,
    through Graph's value: "Clean" is stored as "NotMalicious"): what marks compare."""
    body = patch_body(change)
    out: dict[str, Any] = {}
    if "status" in body:
        out["status"] = spelling.STATUS.get(body["status"], change.status)
    if "assignedTo" in body:
        out["assignedTo"] = body["assignedTo"]
    if "classification" in body:
        out["classification"] = spelling.CLASSIFICATION.get(body["classification"])
    if "determination" in body:
        out["determination"] = spelling.DETERMINATION.get(body["determination"])
    return out


def shaped(alert: dict[str, Any]) -> dict[str, Any]:
    """A Graph alert under Defender's names and spelling ({} for {})."""
    return dict(mde_shaped(alert, GRAPH)) if alert else {}


def shows(alert: dict[str, Any], change: Change) -> bool:
    """Whether Graph's alert shows the change: its fields, and its comment among the
    alert's comments (bulk's read-back, which has no time to compare)."""
    body = patch_body(change)
    if any(alert.get(name) != value for name, value in body.items()):
        return False
    return change.comment is None or any(
        isinstance(c, dict) and c.get("comment") == change.comment
        for c in alert.get("comments") or [])


def reflected(alert: dict[str, Any], change: Change, since: datetime,
              skew: Any) -> bool:
    """Whether Graph's alert already shows the change (each field as asked, and the
    comment among those added since the first attempt): an earlier attempt sent it."""
    body = patch_body(change)
    if any(alert.get(name) != value for name, value in body.items()):
        return False
    if change.comment is None:
        return True
    for comment in alert.get("comments") or []:
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
