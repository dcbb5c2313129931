"""Cluster emails: an MSSP-wide rule with `clusters` set fires when an indicator is seen at
several customers ("new") or also when another customer joins ("new_or_grew"); one email
per cluster version, claimed in the notify ledger under the event's id as alert emails
are. Only MSSP-wide rules: a cluster names other customers, and a tenant's rule may mail
that tenant's own contacts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlencode

from shared.messages import ClusterEvent
from shared.notify.render import (
    HTML_TEMPLATES,
    TEXT_TEMPLATES,
    envelope,
    fix_boundary,
    one_line,
)
from shared.notify.rules import GLOBAL, SEVERITIES, Rule, includes

CLUSTER_OPTIONS = ("off", "new", "new_or_grew")
KIND_LABELS = {"sha256": "SHA256", "sha1": "SHA1", "ip": "IP address", "domain": "domain",
               "url": "URL", "file_name": "file name"}


def severities_of(counts: Mapping[str, int]) -> list[str]:
    """The cluster's known severities as Defender spells them ("high" -> "High"), lowest
    first; unknown ones (UnSpecified) are left out."""
    found = {str(s).capitalize() for s, n in counts.items() if n}
    return [s for s in SEVERITIES if s in found]


def cluster_matches(rule: Rule, event: ClusterEvent) -> bool:
    """MSSP-wide rules only; its tenant choice takes the cluster when it takes one of the
    cluster's tenants; `severities` wants one of the cluster's alerts' severities,
    `min_severity` its highest. The alert filters (device groups, products...) do not
    apply: a cluster is about an indicator, not one alert."""
    if rule.scope != GLOBAL or not rule.enabled or rule.clusters not in ("new", "new_or_grew"):
        return False
    if event.change == "grew" and rule.clusters != "new_or_grew":
        return False
    if not any(includes(rule, t["id"]) for t in event.tenants):
        return False
    present = severities_of(event.severities)
    if rule.severities and not set(present) & set(rule.severities):
        return False
    highest = event.highest_severity
    return not (rule.min_severity and (highest is None or SEVERITIES.index(
        highest) < SEVERITIES.index(rule.min_severity)))


def cluster_link(portal: str, kind: str, value: str) -> str:
    """The cluster's page in the MSSP portal (`portal`: its base URL), as the portal links
    it (portal/cluster_pages.py): the indicator's kind in the path, its value a query
    parameter, both quoted."""
    return f"{portal}/clusters/{quote(kind, safe='')}?{urlencode({'value': value})}"


def _tenants(tenants: list[dict[str, Any]], names: bool) -> list[dict[str, Any]]:
    """Each tenant on one line: its name (when the rule shows names), id, alert count."""
    return [{"id": one_line(t.get("id"), 100),
             "name": one_line(t.get("name"), 200) if names else "",
             "alerts": t.get("alerts")} for t in tenants]


def render_cluster(event: ClusterEvent, rule: Rule, recipients: list[str], sender: str,
                   reply_to: str, mssp_name: str, date: datetime, msgid: str,
                   portal: str = "") -> EmailMessage:
    """The email (text and autoescaped HTML) of one cluster version; a `grew` version
    names the tenants that joined."""
    names = rule.include_org_name
    joined = _tenants(event.joined, names) if event.change == "grew" else []
    context = {
        "event": event, "rule": rule, "mssp_name": mssp_name,
        "kind": KIND_LABELS.get(event.indicator_kind, event.indicator_kind),
        "tenants": _tenants(event.tenants, names), "joined": joined,
        "severity": event.highest_severity or "Cluster",
        "severities": sorted(event.severities.items(), key=lambda kv: -kv[1]),
        "hub": cluster_link(portal, event.indicator_kind, event.indicator)
        if rule.include_portal_link and portal else "",
    }
    who = ", ".join(t["name"] or t["id"] for t in joined)
    subject = (f"[{context['severity']}] seen at {len(event.tenants)} customers"
               + (f" (joined: {who})" if who else "")
               + f": {context['kind']} {event.indicator}")
    message = EmailMessage()
    envelope(message, subject, sender, recipients, reply_to, date, msgid)
    message["X-MSSP-Hub-Event"] = one_line(event.event_id, 300)
    message.set_content(TEXT_TEMPLATES.get_template("cluster.txt").render(**context))
    message.add_alternative(HTML_TEMPLATES.get_template("cluster.html").render(**context),
                            subtype="html")
    fix_boundary(message)
    return message
