"""Incident events (graph tenants) in the SIEM formats, as their own event type: a CEF
line whose signature is `incident`, an ECS document of `event.kind: alert` in dataset
`mssp_hub.incident`, and the JSON document of HEC and webhooks. `cef_of` and `ecs_of`
pick the alert, incident or cluster (siem/cluster_formats.py) mapping by the event's
type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.alerts.view import Seen
from shared.siem.cef import VENDOR, cef_line, format_cef, millis
from shared.siem.cluster_formats import cluster_cef, cluster_ecs, is_cluster
from shared.siem.ecs import drop_empty, to_ecs

INCIDENT = "incident"
PRODUCT = "Defender XDR"  # incidents correlate alerts of every Defender product
SEVERITY_CEF = {"informational": 2, "low": 3, "medium": 5, "high": 8}
SEVERITY_ECS = {"informational": 21, "low": 47, "medium": 73, "high": 99}


def is_incident(event: Mapping[str, Any]) -> bool:
    return event.get("type") == INCIDENT


def _incident(event: Mapping[str, Any]) -> Mapping[str, Any]:
    found = event.get("incident")
    return found if isinstance(found, dict) else {}


def incident_severity(event: Mapping[str, Any]) -> str:
    """The severity as Defender for Endpoint spells it ("high" -> "High")."""
    return str(_incident(event).get("severity") or "").capitalize()


def incident_cef(event: Mapping[str, Any]) -> str:
    """One CEF line for an incident version (every value escaped as for alerts)."""
    inc = _incident(event)
    header = [VENDOR, PRODUCT, "1.0", INCIDENT, str(inc.get("name") or "")[:512],
              SEVERITY_CEF.get(str(inc.get("severity")), 0)]
    pairs: list[tuple[str, Any]] = [
        ("rt", millis(inc.get("lastUpdateDateTime") or event.get("version"))),
        ("start", millis(inc.get("createdDateTime"))),
        ("externalId", event.get("incident_id")), ("msg", inc.get("name")),
        ("outcome", inc.get("status")), ("act", event.get("change")),
        ("suser", inc.get("assignee")), ("request", inc.get("webUrl")),
    ]
    custom = [("cs1", "TenantId", event.get("tenant")),
              ("cs2", "TenantName", event.get("tenant_name")),
              ("cs3", "AlertIds", ",".join(str(a) for a in inc.get("alertIds") or [])),
              ("cs4", "Tags", ",".join(str(t) for t in inc.get("tags") or [])),
              ("cs5", "Classification", inc.get("classification")),
              ("cs6", "DedupeKey", event.get("event_id")),
              ("cn1", "AlertCount", inc.get("alertCount"))]
    return cef_line(header, pairs, custom)


def incident_ecs(event: Mapping[str, Any]) -> dict[str, Any]:
    """An ECS document of an incident version; the incident kept under
    `microsoft.graph_security_incident`."""
    inc = _incident(event)
    by = event.get("by") if isinstance(event.get("by"), dict) else {}
    doc = {
        "@timestamp": inc.get("lastUpdateDateTime") or event.get("version"),
        "message": inc.get("name"),
        "event": {"id": event.get("incident_id"), "kind": "alert",
                  "module": "m365_defender", "dataset": "mssp_hub.incident",
                  "category": ["intrusion_detection"], "created": inc.get("createdDateTime"),
                  "severity": SEVERITY_ECS.get(str(inc.get("severity")), 0),
                  "action": event.get("change"), "url": inc.get("webUrl")},
        "cloud": {"account": {"id": event.get("tenant")}, "provider": "azure"},
        "organization": {"id": event.get("tenant"), "name": event.get("tenant_name")},
        "observer": {"vendor": "Microsoft", "product": PRODUCT},
        "tags": list(inc.get("tags") or []),
        # who changed it, when the MSSP did (incident triage), as alert documents say
        "labels": {"dedupe_key": event.get("event_id"), "changed_by": by.get("name"),
                   "changed_by_id": by.get("id"), "changed_via": by.get("via")},
        "microsoft": {"graph_security_incident": {
            **inc, "id": event.get("incident_id"), "changed": event.get("changed") or {},
            "tenant_name": event.get("tenant_name")}},
    }
    return drop_empty(doc)


def incident_document(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of an incident version for HEC, webhooks and the pull API."""
    return {"type": INCIDENT, "event_id": event["event_id"], "tenant_id": event["tenant"],
            "tenant_name": event.get("tenant_name"), "change": event.get("change"),
            "changed": event.get("changed") or {}, "version": event.get("version"),
            "incident_id": event.get("incident_id"), "feed_time": event.get("feed_time"),
            "product": PRODUCT, "incident": dict(_incident(event)),
            **({"by": event["by"]} if isinstance(event.get("by"), dict) else {})}


def cef_of(event: Mapping[str, Any], seen: Seen | None = None) -> str:
    """`seen`: an alert event's `event_alert`, if the caller has it already."""
    if is_cluster(event):
        return cluster_cef(event)
    return incident_cef(event) if is_incident(event) else format_cef(event, seen)


def ecs_of(event: Mapping[str, Any], seen: Seen | None = None) -> dict[str, Any]:
    """`seen`: an alert event's `event_alert`, if the caller has it already."""
    if is_cluster(event):
        return cluster_ecs(event)
    return incident_ecs(event) if is_incident(event) else to_ecs(event, seen)
