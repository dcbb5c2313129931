"""The alerts list's bulk form: what it offers, and what a posted form asks for."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shared.model import parse_tenant_id
from shared.storage.bulk_jobs import BulkJob
from shared.triage.bulk import MAX_ALERTS, BadSelection, BulkTriage, Target, new_job_id
from shared.triage.bulk_api import matching
from shared.triage.model import DETERMINATIONS, STATUSES, Actor, Change, InvalidChange

JOB_ID = re.compile(r"[0-9a-f]{32}")
FILTER_FIELDS = ("tenant", "severity", "status", "category", "device_group", "range")
Match = Callable[[dict[str, str]], tuple[list[Target], str]]
__all__ = ["JOB_ID", "Refused", "choices", "matching", "submit"]


class Refused(Exception):
    """Why the form started no job, in words for the page."""


def choices(service: BulkTriage | None) -> dict[str, Any] | None:
    """What the form offers (None: bulk actions are not wired here). Only valid
    classification and determination pairs are offered; the form's id makes a form sent
    twice one job."""
    if service is None:
        return None
    pairs = [(f"{c}:{d}", f"{c}: {d}") for c, ds in DETERMINATIONS.items() for d in ds]
    return {"job_id": new_job_id(), "cap": MAX_ALERTS, "statuses": STATUSES,
            "pairs": pairs}


def change_of(form: dict[str, str]) -> Change:
    classification, _, determination = (form.get("classify") or "").partition(":")
    return Change(status=form.get("status") or None,
                  assigned_to=(form.get("assigned_to") or "").strip() or None,
                  classification=classification or None, determination=determination or None,
                  comment=(form.get("comment") or "").strip() or None)


def submit(service: BulkTriage, form: dict[str, str], lists: dict[str, list[str]],
           actor: Actor, match: Match) -> BulkJob:
    """Start the job the form asks for: the checked alerts ("<tenant>|<alert id>"), or
    every alert matching the filter the page showed. Refused with the reason."""
    change = change_of(form)
    try:
        change.validate()
        if form.get("scope") == "filter":
            targets, source = match({k: form.get(f"f_{k}", "") for k in FILTER_FIELDS})
        else:
            targets, source = [], "selection"
            for value in lists.get("sel", []):
                tenant_id, _, alert_id = value.partition("|")
                if not 0 < len(alert_id) <= 200:
                    raise Refused("A selected alert has no id.")
                targets.append(Target(parse_tenant_id(tenant_id), alert_id))
        job_id = form.get("job_id", "")
        return service.submit(actor, change, targets, source=source,
                              job_id=job_id if JOB_ID.fullmatch(job_id) else None)
    except InvalidChange as exc:
        raise Refused(f"The change is not valid: {exc.field} {exc.message}.") from None
    except BadSelection as exc:
        raise Refused(f"{exc}.") from None
    except ValueError:  # a tenant id that is not a GUID
        raise Refused("A selected alert names no tenant.") from None
