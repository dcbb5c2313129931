"""Does an alert event concern a rule, and which of its recipients?"""

from __future__ import annotations

from datetime import datetime

from shared import timefmt
from shared.alerts.view import MDE_SOURCE
from shared.messages import AlertEvent
from shared.notify.rules import SEVERITIES, Rule


def matches(rule: Rule, event: AlertEvent) -> bool:
    alert = event.alert
    if event.change == "new" and not rule.on_new:
        return False
    if event.change == "updated" and not rule.on_update:
        return False
    if event.by is not None and rule.ignore_own_changes:
        return False  # the MSSP's own action: its analysts know already
    checks = ((rule.severities, alert.get("severity")),
              (rule.device_groups, alert.get("rbacGroupName")),
              (rule.categories, alert.get("category")),
              (rule.detection_sources, alert.get("detectionSource")),
              (rule.statuses, alert.get("status")),
              # a summary from before the product was kept is an endpoint alert's
              (rule.products, alert.get("serviceSource") or MDE_SOURCE))
    if rule.min_severity and (alert.get("severity") not in SEVERITIES or SEVERITIES.index(
            alert["severity"]) < SEVERITIES.index(rule.min_severity)):
        return False
    return all(not allowed or value in allowed for allowed, value in checks)


def recipients_for(rule: Rule, event: AlertEvent) -> list[str]:
    """As in Defender: a recipient gets only alerts raised after it was added."""
    try:
        raised_at = timefmt.to_datetime(event.alert.get("alertCreationTime"))
    except (ValueError, TypeError, AttributeError):
        raised_at = None
    found = []
    for recipient in rule.recipients:
        added = datetime.fromisoformat(recipient["added_at"])
        if raised_at is None or raised_at >= added:
            found.append(recipient["address"])
    return found
