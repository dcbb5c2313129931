"""One alert as an analyst reads it before acting, from reads keyed by the alert: the
stored alert (a point read, plus its overflow rows), its versions as the SIEM feed holds
them (the feed's ledger is keyed by event id "<tenant>:<alert>:<version>": one range
query per day of versions, then a point read per entry), the emails about it (one query on
its MailOutbox pointers) and the audit trail's entries for it. Never a tenant-wide scan.

Everything here comes from Defender or a customer's tenant and is hostile: it is only ever
rendered as text by autoescaped templates; nothing from an alert becomes a link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from shared import timefmt
from shared.alerts.view import AlertView
from shared.netloc import is_loopback
from shared.portal.queries import PORTAL

MAX_VERSIONS = 50  # versions shown (the newest): one point read each
MAX_EMAILS = 20
MAX_EVIDENCE = 200  # evidence rows shown; the rest is counted


@dataclass(frozen=True)
class EvidenceRow:
    entity_type: str
    file: str  # path\name
    sha1: str
    sha256: str
    command_line: str
    ip: str
    url: str  # shown as text, never a link
    user: str
    verdict: str


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


SHOWN = ("id", "title", "description", "recommendedAction", "severity", "status",
         "classification", "determination", "assignedTo", "computerDnsName",
         "rbacGroupName", "category", "detectionSource", "firstEventTime", "lastEventTime",
         "alertCreationTime", "lastUpdateTime", "resolvedTime", "incidentId")


def shown(view: AlertView) -> dict[str, str]:
    """The alert's fields the page shows, each as text ("" when absent), under Defender
    for Endpoint's names whichever API stored it, with its product."""
    fields = view.fields()
    found = {name: _text(fields.get(name)) for name in SHOWN}
    found["product"] = view.product
    return found


def evidence_rows(view: AlertView) -> list[EvidenceRow]:
    rows = []
    for item in view.evidence[:MAX_EVIDENCE]:
        path, name = _text(item.file_path), _text(item.file_name)
        rows.append(EvidenceRow(
            entity_type=item.entity_type,
            file="\\".join(p for p in (path.rstrip("\\"), name) if p),
            sha1=_text(item.sha1), sha256=_text(item.sha256),
            command_line=_text(item.command_line), ip=_text(item.ip), url=_text(item.url),
            user=item.user, verdict=_text(item.verdict or item.detection_status)))
    return rows


def comments(view: AlertView) -> list[dict[str, str]]:
    """The alert's comments, oldest first, as text."""
    found = [{"comment": c.text, "by": c.by, "at": c.at} for c in view.comments]
    return sorted(found, key=lambda c: c["at"])


def related_user(view: AlertView) -> str:
    return view.user


def techniques(view: AlertView) -> list[str]:
    return list(view.mitre_techniques)


def version_days(alert: Mapping[str, Any], retention_days: int, now: datetime | None = None
                 ) -> list[str]:
    """The days (YYYYMMDD) whose feed ledger may hold a version of this alert, newest
    first: from its version's day back to its creation day, no further back than the
    feed keeps (retention + 1 day) — at most retention + 2 queries."""
    now = now or datetime.now(UTC)
    try:
        last = timefmt.to_datetime(timefmt.normalize(str(alert.get("lastUpdateTime"))))
    except (TypeError, ValueError):
        last = now
    try:
        first = timefmt.to_datetime(timefmt.normalize(str(alert.get("alertCreationTime"))))
    except (TypeError, ValueError):
        first = last
    first = max(first, now - timedelta(days=retention_days + 1), last - timedelta(days=365))
    days, day = [], last.date()
    while day >= first.date():
        days.append(day.strftime("%Y%m%d"))
        day -= timedelta(days=1)
    return days or [last.strftime("%Y%m%d")]


def simulated(api_base_override: str | None) -> bool:
    """The Defender API is the local simulator: there is no Defender portal to open."""
    return bool(api_base_override) and is_loopback(api_base_override or "")


def defender_link(tenant_id: str, alert_id: str) -> str:
    return PORTAL.format(id=quote(alert_id, safe=""), tenant=quote(tenant_id, safe=""))


DEFENDER_INCIDENT = "https://security.microsoft.com/incidents/{id}?tid={tenant}"


def defender_incident_link(tenant_id: str, incident_id: str) -> str:
    return DEFENDER_INCIDENT.format(id=quote(incident_id, safe=""),
                                    tenant=quote(tenant_id, safe=""))


def page_path(base: str, tenant_id: str, alert_id: str) -> str:
    """The portal's alert page (ids quoted: an alert id is Defender's, not ours)."""
    return f"{base}/tenants/{quote(tenant_id, safe='')}/alerts/{quote(alert_id, safe='')}"


def changes(entry: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A feed entry's "what changed" as (field, before, after) text."""
    changed = entry.get("changed")
    if not isinstance(changed, dict):
        return []
    found = []
    for name, pair in sorted(changed.items()):
        before, after = [*pair, None, None][:2] if isinstance(pair, list) else (None, pair)
        found.append((_text(name), _text(before), _text(after)))
    return found
