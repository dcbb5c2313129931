"""The alert page's action forms: what each form asks Defender to change, and what the
analyst is told of the outcome.

Each form carries the version it was rendered from (`seen_version`, the alert's
lastUpdateTime) and a nonce made at render: the action id is derived from the nonce, the
form's action and the principal, so a form sent twice is one action (the triage service
answers the second from its record), and nobody can reuse another analyst's action id.
The pairs offered are the valid ones (DETERMINATIONS); the server checks them again
(Change.validate), since a form can be sent with anything.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from shared.portal.auth import READ_ONLY_ANALYST, Principal
from shared.triage.model import DETERMINATIONS, STATUSES, Actor, Change, InvalidChange

ACTIONS = ("assign", "status", "classify", "comment")
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
VERSION = re.compile(r"[0-9T:.Z+-]{10,40}")  # a lastUpdateTime as Defender writes it


class Applied(Protocol):
    """What TriageService.apply answers (shared/triage/service.py)."""

    outcome: str  # "done", "conflict", "refused", "throttled", "failed"
    alert: dict[str, Any] | None  # the alert as Defender now has it, when known
    detail: str
    entry: Any  # the AuditEntry recorded


class Triage(Protocol):
    def apply(self, actor: Actor, tenant_id: str, alert_id: str, change: Change, *,
              seen_version: str, action_id: str) -> Applied: ...


def blocked(principal: Principal, cfg: Any, tenant: Any, available: bool, items: str
            ) -> tuple[str, bool]:
    """Why an alert's or incident's forms are disabled ("" when they are not), and whether
    the tenant's read-only access is why (the page then links its re-consent);
    `available`: the deployment has a triage service for `items` ("alerts", "incidents")."""
    may_act = principal.may_act(cfg)
    writable = getattr(tenant, "access", "read") == "triage"
    if not may_act:
        why = READ_ONLY_ANALYST
    elif not writable:
        why = ("This tenant granted read-only access"
               + (f" ({tenant.access_reason})" if getattr(tenant, "access_reason", "")
                  else "") + ": ask its administrator to consent to triage access.")
    elif not available:
        why = f"Acting on {items} is not available in this deployment."
    else:
        why = ""
    return why, may_act and not writable


def nonce() -> str:
    return secrets.token_urlsafe(18)


def actor(principal: Principal) -> Actor:
    return Actor(id=principal.id, name=principal.name, via=principal.via)


def action_id(principal: Principal, action: str, form: dict[str, str]) -> str:
    """The action's idempotency key: the page's nonce and the form's action, bound to
    who sent it (the forms of one page are different actions; one form sent twice is
    one)."""
    given = form.get("nonce", "")
    if not NONCE.fullmatch(given):
        raise InvalidChange("nonce", "the form is incomplete: reload the page")
    digest = hashlib.sha256(f"{principal.via}|{principal.id}|{action}|{given}".encode()
                            ).hexdigest()
    return f"portal-{digest[:40]}"


def seen_version(form: dict[str, str]) -> str:
    given = form.get("seen_version", "")
    if not VERSION.fullmatch(given):
        raise InvalidChange("seen_version", "the form is incomplete: reload the page")
    return given


def change_from_form(action: str, form: dict[str, str], principal: Principal,
                     statuses: tuple[str, ...] = STATUSES) -> Change:
    """The change one form asks for, validated as Defender would (InvalidChange if not);
    `statuses`: an incident's differ from an alert's."""
    def text(name: str) -> str | None:
        value = form.get(name, "").strip()
        return value or None

    if action == "assign":
        to = principal.name if form.get("assign_to") == "me" else text("address")
        if to is None:
            raise InvalidChange("assignedTo", "give an address, or assign it to yourself")
        return Change(assigned_to=to, comment=text("comment")).validate(statuses)
    if action == "status":
        return Change(status=form.get("status", ""), comment=text("comment")
                      ).validate(statuses)
    if action == "classify":
        verdict = form.get("verdict", "")
        classification, _, determination = verdict.partition("/")
        if classification not in DETERMINATIONS:
            raise InvalidChange("classification", "choose a classification")
        return Change(classification=classification, determination=determination or None,
                      status="Resolved" if form.get("resolve") == "yes" else None,
                      comment=text("comment")).validate(statuses)
    if action == "comment":
        return Change(comment=text("comment") or "").validate(statuses)
    raise InvalidChange("action", f"must be one of {', '.join(ACTIONS)}")


@dataclass(frozen=True)
class Said:
    """What the page says of an outcome, and the HTTP status it is served with."""

    status: int
    kind: str  # the box's style: ok, warn or bad
    message: str


def submitted(action: str, form: dict[str, str], principal: Principal,
              statuses: tuple[str, ...] = STATUSES, kind: str = ""
              ) -> tuple[Change, str, str]:
    """(the change, the version the page showed, the action id) of a sent form, checked
    (InvalidChange if not); `kind`: "incident-" keeps an incident's action ids apart."""
    return (change_from_form(action, form, principal, statuses), seen_version(form),
            action_id(principal, f"{kind}{action}", form))


def said(outcome: str, detail: str, retry_after: str = "") -> Said:
    if outcome == "done":
        return Said(200, "ok", "Done: Defender has the change; below is the alert as "
                               "Defender answered.")
    if outcome == "conflict":
        return Said(409, "warn", "Not changed: the alert was changed in Defender since you "
                                 "opened it. Below is its new state; nothing was "
                                 "overwritten. Check it, then act again if still needed.")
    if outcome == "refused":
        return Said(403, "bad", f"Refused: {detail or 'Defender refused the change.'}")
    if outcome == "throttled":
        when = f" Try again after {retry_after}." if retry_after else " Try again shortly."
        return Said(429, "warn", f"Not sent: the tenant's Defender API budget is spent "
                                 f"for now.{when} {detail}".strip())
    return Said(502, "bad", f"Failed: {detail or 'Defender did not answer.'}")


def verdict_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """The classify form's <optgroup>s: each classification with its determinations."""
    return [(c, [(f"{c}/{d}", d) for d in dets]) for c, dets in DETERMINATIONS.items()]


STATUS_CHOICES = STATUSES
