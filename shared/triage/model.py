"""What an analyst asks Defender to change, who asked, and what came of it.

The values follow Defender's "Update alert" and "Batch update alerts" pages. Where the
pages disagree on a name (CompromisedUser/CompromisedAccount, ConfirmedActivity/
ConfirmedUserActivity, NotMalicious/Clean) both spellings are accepted here and sent as
given: the API accepts what its own page documents, and refusing one spelling would refuse
a value some tenant's Defender returns. A pair that no page allows is refused before any
call is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
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
CLASSIFICATIONS = tuple(DETERMINATIONS)
MAX_COMMENT = 1_000  # characters; Defender's own comment box takes about this much
MAX_ASSIGNEE = 256

MAX_ANSWER = 8_000  # characters of an answer an audit entry keeps whole


def compact(document: dict[str, Any], dropped: tuple[str, ...],
            fields_of: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """An alert or incident as an audit entry keeps the API's answer: without its
    `dropped` parts, and only its triage fields and last comments when it is large."""
    kept = {k: v for k, v in document.items() if k not in (*dropped, "@odata.context")}
    if len(str(kept)) > MAX_ANSWER:
        kept = {"id": document.get("id"), **fields_of(document),
                "comments": (document.get("comments") or [])[-3:]}
    return kept


class InvalidChange(ValueError):
    """A change Defender would refuse, found before any call; `field` names the part."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field, self.message = field_name, message


@dataclass(frozen=True)
class Change:
    """The fields of one update; None leaves a field as it is. A comment is added, never
    replaces one."""

    status: str | None = None
    assigned_to: str | None = None
    classification: str | None = None
    determination: str | None = None
    comment: str | None = None

    def validate(self, statuses: tuple[str, ...] = STATUSES) -> Change:
        """self, or InvalidChange naming the first bad field (`statuses`: an incident's
        differ from an alert's)."""
        if self.status is not None and self.status not in statuses:
            raise InvalidChange("status", f"must be one of {', '.join(statuses)}")
        if self.classification is not None and self.classification not in DETERMINATIONS:
            raise InvalidChange("classification",
                                f"must be one of {', '.join(CLASSIFICATIONS)}")
        if self.determination is not None:
            if self.classification is None:
                raise InvalidChange("determination", "needs a classification with it")
            if self.determination not in DETERMINATIONS[self.classification]:
                raise InvalidChange(
                    "determination", f"{self.determination!r} is not a determination of "
                    f"{self.classification}; one of "
                    f"{', '.join(DETERMINATIONS[self.classification])}")
        if self.assigned_to is not None and not 0 < len(self.assigned_to) <= MAX_ASSIGNEE:
            raise InvalidChange("assignedTo", f"must be 1..{MAX_ASSIGNEE} characters")
        if self.comment is not None and not 0 < len(self.comment.strip()) <= MAX_COMMENT:
            raise InvalidChange("comment", f"must be 1..{MAX_COMMENT} characters")
        if self.empty:
            raise InvalidChange("body", "says nothing to change")
        return self

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.status, self.assigned_to, self.classification,
                                       self.determination, self.comment))

    def body(self) -> dict[str, Any]:
        """The JSON body of Defender's PATCH (and, with alertIds, of batchUpdate)."""
        names = {"status": self.status, "assignedTo": self.assigned_to,
                 "classification": self.classification,
                 "determination": self.determination, "comment": self.comment}
        return {k: v for k, v in names.items() if v is not None}

    def fields(self) -> dict[str, Any]:
        """The alert fields this change sets (a comment is not one), by Defender's names."""
        return {k: v for k, v in self.body().items() if k != "comment"}


@dataclass(frozen=True)
class Actor:
    """Who acted: a signed-in analyst (portal) or a named API key (automation). `id` is
    the principal's object id or the key's name; it is what the audit trail keeps."""

    id: str
    name: str
    via: str  # "entra", "key" (the local portal key) or "api"


@dataclass
class AuditEntry:
    """One action on one alert, recorded once (its `action_id` is the idempotency key):
    who, when, where, the fields before and after, and Defender's answer."""

    action_id: str  # unique per (request, alert): a retried request writes the same id
    at: datetime
    actor: Actor
    tenant_id: str
    alert_id: str  # "" for an incident's entry
    change: dict[str, Any]  # Change.body()
    before: dict[str, Any]  # the fields as the hub had them when the action was asked
    after: dict[str, Any]  # as Defender answered (or as asked, for a batch)
    outcome: str  # "done", "conflict", "refused", "throttled", "failed"
    detail: str = ""  # Defender's answer: status code and message, or why not sent
    batch_id: str = ""  # the bulk job it belongs to, if any
    extra: dict[str, Any] = field(default_factory=dict)
    incident_id: str = ""  # set (and alert_id "") when the action was on an incident
