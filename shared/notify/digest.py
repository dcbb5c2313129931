"""Digests: events held per rule and sent as one email every N minutes, grouped by tenant
and severity; also where events go when a rule is over its hourly cap.

The held events are in shared/storage/digests.py. Sending writes a batch id on the held
rows first, so a worker that dies mid-way resends the same batch, not a different one;
the ledger then makes the batch go once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from shared.messages import AlertEvent
from shared.notify.render import HTML_TEMPLATES, TEXT_TEMPLATES, envelope, fix_boundary, portal_link
from shared.notify.rules import Rule
from shared.storage.digests import Held

SEVERITY_ORDER = ("High", "Medium", "Low", "Informational", "UnSpecified")
BRIEF_CHARS = 512  # per held field: the held event stays one string property in Azure


def _short(value: Any) -> Any:
    return value[:BRIEF_CHARS] if isinstance(value, str) else value


def brief(event: AlertEvent) -> dict[str, Any]:
    """What a digest shows of an event, small enough to hold (ASCII, under 32K chars)."""
    alert = event.alert
    return {"tenant": event.tenant_id, "tenant_name": _short(event.tenant_name),
            "change": event.change,
            "alert": {k: _short(alert.get(k)) for k in (
                "id", "title", "severity", "status", "category", "computerDnsName",
                "rbacGroupName", "alertCreationTime", "lastUpdateTime")}}


def due(rule: Rule, rows: list[Held], last_sent: datetime | None, now: datetime) -> bool:
    """Held events, and the rule's window since its last digest has passed."""
    if not rows:
        return False
    return last_sent is None or now - last_sent >= timedelta(minutes=rule.digest_minutes)


def pick_batch(rows: list[Held]) -> tuple[str, list[Held], bool]:
    """(batch, its rows, new?): an unfinished batch if a worker died, else all free rows
    under a new batch id (to be written on them before sending)."""
    unfinished = sorted({r.batch for r in rows if r.batch})
    if unfinished:
        return unfinished[0], [r for r in rows if r.batch == unfinished[0]], False
    return uuid.uuid4().hex, [r for r in rows if not r.batch], True


def digest_recipients(rows: list[Held]) -> list[str]:
    found: set[str] = set()
    for row in rows:
        found.update(row.recipients)
    return sorted(found)


def _link(held: dict[str, Any]) -> str:
    """Defender's page of a held alert, or of a held incident (its webUrl)."""
    if held.get("type") == "incident":
        return str(held.get("webUrl") or "")
    return portal_link(str(held["alert"].get("id", "")), held["tenant"])


def render_digest(rule: Rule, rows: list[Held], recipients: list[str], sender: str,
                  reply_to: str, mssp_name: str, date: datetime, msgid: str) -> EmailMessage:
    """One email: per tenant, per severity, a line per alert (or incident)."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    names: dict[str, str] = {}
    for row in rows:
        event = row.event
        names[event["tenant"]] = event.get("tenant_name") or event["tenant"]
        alert = dict(event["alert"])
        alert["link"] = _link(event) if rule.include_portal_link else ""
        alert["change"] = event.get("change")
        grouped[event["tenant"]][alert.get("severity") or "UnSpecified"].append(alert)
    tenants = [(names[t], [(sev, grouped[t][sev]) for sev in SEVERITY_ORDER if sev in grouped[t]])
               for t in sorted(grouped, key=lambda t: names[t].lower())]
    context = {"rule": rule, "tenants": tenants, "count": len(rows), "mssp_name": mssp_name}
    message = EmailMessage()
    envelope(message, f"[Digest] {len(rows)} alerts for rule {rule.name}", sender, recipients,
             reply_to, date, msgid)
    message.set_content(TEXT_TEMPLATES.get_template("digest.txt").render(**context))
    message.add_alternative(HTML_TEMPLATES.get_template("digest.html").render(**context),
                            subtype="html")
    fix_boundary(message)
    return message
