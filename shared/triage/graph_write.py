"""The steps of one triage write through Microsoft Graph, the same for an alert
(service.py) and an incident (incident_service.py): a retry whose earlier attempt may
have been sent reads first and records it done when Graph shows the change already; a
page's stale version is a conflict with nothing sent; then PATCH for the fields, POST for
the comment (Graph has no comment property on a PATCH), and a read-back when the answers
do not show the whole document. What differs between the two is in a `GraphItem`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from shared.microsoft.defender import DefenderError
from shared.microsoft.identity import TokenError
from shared.triage.model import Change

log = logging.getLogger(__name__)

Document = dict[str, Any]
Outcome = TypeVar("Outcome")  # what `done` records (service.Applied)
HALF = "; the fields were changed, the comment was not added"  # a failure after the PATCH


def _as_is(document: Document) -> Document:
    return document


@dataclass(frozen=True)
class GraphItem:
    """One alert or incident as the write steps see it (each callable takes the token)."""

    noun: str  # "alert", "incident": a conflict's wording
    ref: str  # tenant/id, for the log
    read: Callable[[str], Document]
    patch: Callable[[str, Document], Document]
    comment: Callable[[str, str], Any]
    reflected: Callable[[Document, Change, datetime, timedelta], bool]
    version: str  # the field a page's seen_version is compared with
    shaped: Callable[[Document], Document] = _as_is  # as the audit entry keeps it


def write(item: GraphItem, change: Change, body: Document, *, token: Callable[[], str],
          intend: Callable[[], datetime | None], seen_version: str | None, known: bool,
          skew: timedelta, same_version: Callable[[str | None, str | None], bool],
          done: Callable[..., Outcome], stored: Callable[[Outcome, Document], Outcome],
          refused: Callable[[TokenError | DefenderError, str], Outcome],
          learned: Callable[[Document], None] = lambda document: None,
          before_write: Callable[[], None] = lambda: None) -> Outcome:
    """Write `change` (`body`: its PATCH, {} for a comment alone) and record the outcome
    with `done`; `stored` keeps the hub's copy of what Graph answered. `known`: the hub
    holds the item's fields already (else Graph's current document is read); a document
    read for the checks is given to `learned`; `before_write` runs after the checks, just
    before the first write."""
    patched = False
    try:
        bearer = token()
        current: Document | None = None
        earlier = intend()
        if earlier is not None:  # an attempt died after asking Graph, maybe
            current = item.read(bearer)
            if item.reflected(current, change, earlier, skew):
                return stored(done("done", "200 OK (sent by an earlier attempt of this "
                                   "action)", item.shaped(current)), current)
        if seen_version is not None or not known:
            current = current or item.read(bearer)
            now_version = current.get(item.version)
            if seen_version is not None and not same_version(now_version, seen_version):
                return done("conflict", f"the {item.noun} changed in Microsoft Graph since "
                            f"{seen_version}: now {now_version}", item.shaped(current))
            learned(current)
        before_write()
        answer: Document = {}
        if body:
            answer = item.patch(bearer, body)
            patched = True
        if change.comment is not None:
            item.comment(bearer, change.comment)
        if change.comment is not None or not answer:
            try:
                answer = item.read(bearer)
            except DefenderError:  # written; the next fetch stores the new version
                log.warning("Triage: %s %s written, not read back", item.noun, item.ref)
    except (TokenError, DefenderError) as exc:
        return refused(exc, HALF if patched else "")
    return stored(done("done", "200 OK", item.shaped(answer)), answer)
