"""Defender's alert updates (`PATCH /api/alerts/{id}`, `POST /api/alerts/batchUpdate`):
what it accepts, how it refuses, and what an accepted update does to the alert.

Determinations: Microsoft's "Update alert" and "Batch update alerts" pages disagree on a
few names (CompromisedUser / CompromisedAccount, ConfirmedActivity / ConfirmedUserActivity,
NotMalicious / Clean). The simulator accepts both spellings of each, stores the one sent,
and refuses any pair neither page allows: the API accepts what its own pages document, and
a simulator stricter than Defender would hide a value some tenant's Defender returns
(shared/triage/model.py makes the same choice). `Apt` and `SecurityPersonnel`, retired in
2022, are refused.
"""

from __future__ import annotations

from typing import Any

STATUSES = ("New", "InProgress", "Resolved")
DETERMINATIONS: dict[str, tuple[str, ...]] = {
    "TruePositive": ("MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser",
                     "CompromisedAccount", "Malware", "Phishing", "UnwantedSoftware",
                     "Other"),
    "InformationalExpectedActivity": ("SecurityTesting", "LineOfBusinessApplication",
                                      "ConfirmedActivity", "ConfirmedUserActivity", "Other"),
    "FalsePositive": ("NotMalicious", "Clean", "InsufficientData", "Other"),
}
FIELDS = ("status", "assignedTo", "classification", "determination", "comment")


class Invalid(ValueError):
    """A body Defender answers 400 to: `code` and a message naming the field."""

    def __init__(self, message: str, code: str = "InvalidRequestBody") -> None:
        super().__init__(message)
        self.code = code


def parse(body: Any, batch: bool = False) -> tuple[dict[str, Any], list[str]]:
    """(the update's fields, the batch's alert ids) of a request body, or Invalid."""
    if not isinstance(body, dict) or not body:
        raise Invalid("Request body is empty or is not a JSON object.", "BadRequest")
    allowed = (*FIELDS, "alertIds") if batch else FIELDS
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Invalid(f"Unknown property '{unknown[0]}' in the request body.")
    ids: list[str] = []
    if batch:
        ids = body.get("alertIds")  # type: ignore[assignment]
        if not isinstance(ids, list) or not ids or not all(
                isinstance(i, str) and i for i in ids):
            raise Invalid("alertIds must be a non-empty array of alert ids.")
    fields = {k: body[k] for k in FIELDS if k in body}
    if not fields:
        raise Invalid("The request body has nothing to update.", "BadRequest")
    for name, value in fields.items():
        if not isinstance(value, str):
            raise Invalid(f"The value of '{name}' must be a string.")
    if "status" in fields and fields["status"] not in STATUSES:
        raise Invalid(f"Invalid value '{fields['status']}' for status. Allowed values: "
                      f"{', '.join(STATUSES)}.")
    if "classification" in fields and fields["classification"] not in DETERMINATIONS:
        raise Invalid(f"Invalid value '{fields['classification']}' for classification. "
                      f"Allowed values: {', '.join(DETERMINATIONS)}.")
    if "comment" in fields and not fields["comment"].strip():
        raise Invalid("comment must not be empty.")
    return fields, ids


def check_pair(fields: dict[str, Any], alert: dict[str, Any]) -> None:
    """Invalid unless the determination belongs to the classification the alert will
    have (the one sent, else the one it has)."""
    determination = fields.get("determination")
    if determination is None:
        return
    classification = fields.get("classification") or alert.get("classification")
    if classification not in DETERMINATIONS:
        raise Invalid("determination needs a classification: set classification with it.")
    if determination not in DETERMINATIONS[classification]:
        raise Invalid(f"Invalid value '{determination}' for determination with "
                      f"classification '{classification}'. Allowed values: "
                      f"{', '.join(DETERMINATIONS[classification])}.")


def applied(alert: dict[str, Any], fields: dict[str, Any], by: str, now: str
            ) -> dict[str, Any]:
    """The alert after an accepted update at `now` by the app named `by`: a new dict
    (stored alerts are replaced, never changed in place)."""
    changed = dict(alert)
    for name in ("status", "assignedTo", "classification", "determination"):
        if name in fields:
            changed[name] = fields[name]
    if "classification" in fields and "determination" not in fields and (
            alert.get("determination") not in DETERMINATIONS[fields["classification"]]):
        changed["determination"] = None  # a pair Defender would not keep
    if fields.get("status") == "Resolved" and alert.get("status") != "Resolved":
        changed["resolvedTime"] = now
    elif "status" in fields and fields["status"] != "Resolved":
        changed["resolvedTime"] = None
    if "comment" in fields:
        changed["comments"] = [*(alert.get("comments") or []),
                               {"comment": fields["comment"], "createdBy": by,
                                "createdTime": now}]
    changed["lastUpdateTime"] = now
    return changed
