"""Whose change is this version: the MSSP's own (an action's marks account for it
exactly) or the customer's (anything else).

Why exact: a notification rule that ignores own changes sends nothing for an event with
`by`, so attributing a customer's change to the MSSP would hide it. A version is the
MSSP's only when every tracked field it changed has the value the latest mark setting
that field asked for, all those marks being one actor's; a version that moved only
`lastUpdateTime` (a comment) needs a mark that added a comment, or whose fields the
alert already had. Deterministic: the answer depends on the marks and the version only
(never on when the fetch runs), so an event rebuilt after a crash carries the same `by`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared import timefmt
from shared.storage.own_marks import Mark

WINDOW_SECONDS = 3_600  # a mark stands for versions up to an hour after it was made
SKEW_SECONDS = 300  # and from 5 minutes before (Defender's clock against the hub's)
SETTABLE = ("status", "assignedTo", "classification", "determination")


def span(versions: Iterable[str]) -> tuple[str, str]:
    """The marks that may concern these versions were made from..through (normalized)."""
    ordered = sorted(versions)
    return (timefmt.shift(ordered[0], -WINDOW_SECONDS),
            timefmt.shift(ordered[-1], SKEW_SECONDS))


def stands_for(mark: Mark, version: str) -> bool:
    return timefmt.shift(version, -WINDOW_SECONDS) <= mark.at <= timefmt.shift(
        version, SKEW_SECONDS)


def changed_by(marks: list[Mark], version: str, changed: dict[str, list[Any]],
               values: dict[str, Any]) -> dict[str, str] | None:
    """The actor (id, name, via) whose marks account for this change, else None.
    `marks`: the alert's, oldest first; `changed`: field -> [old, new] (events.changes);
    `values`: the alert's tracked fields now."""
    live = [m for m in marks if stands_for(m, version)]
    if not live:
        return None
    fields = {k: pair[1] for k, pair in changed.items() if k != "lastUpdateTime"}
    if not fields:  # only lastUpdateTime moved: a comment, or fields set as they were
        matching = [m for m in live if m.comment or (m.fields and all(
            values.get(k) == v for k, v in m.fields.items()))]
        return dict(matching[-1].actor) if matching else None
    actor: dict[str, str] | None = None
    for name, value in fields.items():
        setting = [m for m in live if name in m.fields]
        if not setting or setting[-1].fields[name] != value:
            return None
        if actor is not None and setting[-1].actor != actor:
            return None
        actor = setting[-1].actor
    return dict(actor) if actor else None
