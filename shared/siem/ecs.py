"""Elastic Common Schema documents for Defender alerts (the field map Elastic's own
Defender integration uses), for SIEMs that index ECS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared import timefmt
from shared.alerts.view import MDE, Seen, event_alert, short_product

SEVERITY = {"UnSpecified": 0, "Informational": 21, "Low": 47, "Medium": 73, "High": 99}


def _iso(value: Any) -> str | None:
    try:
        return timefmt.to_datetime(str(value)).isoformat().replace("+00:00", "Z")
    except (ValueError, TypeError):
        return None


def drop_empty(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without its empty values (None, "", [], {}), at every depth: ECS
    leaves a field out rather than empty (alert, incident and cluster documents alike)."""
    out = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            value = drop_empty(value)
        if value not in (None, "", [], {}):
            out[key] = value
    return out


def to_ecs(event: Mapping[str, Any], seen: Seen | None = None) -> dict[str, Any]:
    """An ECS document; the original alert is kept under `microsoft.defender_endpoint`
    (a Graph alerts_v2 one under `microsoft.graph_security_alert`); `observer.product`
    names the alert's product (`seen`: the event's `event_alert`, if the caller has it)."""
    alert, product, schema = seen or event_alert(event)
    original = event["alert"] if isinstance(event.get("alert"), dict) else {}
    kept = "defender_endpoint" if schema == MDE else "graph_security_alert"
    evidence = [e for e in alert.get("evidence") or [] if isinstance(e, dict)]
    files = [e for e in evidence if e.get("fileName")]
    techniques = list(alert.get("mitreTechniques") or [])
    by = event.get("by") if isinstance(event.get("by"), dict) else {}
    return drop_empty({
        "@timestamp": _iso(alert.get("lastUpdateTime") or event.get("version")),
        "message": alert.get("title"),
        "event": {
            "id": alert.get("id") or event.get("alert_id"),
            "kind": "alert", "module": "m365_defender", "dataset": "mssp_hub.alert",
            "category": ["malware" if alert.get("category") == "Malware"
                         else "intrusion_detection"],
            "created": _iso(alert.get("alertCreationTime")),
            "start": _iso(alert.get("firstEventTime")), "end": _iso(alert.get("lastEventTime")),
            "severity": SEVERITY.get(str(alert.get("severity")), 0),
            "action": event.get("change"),
            "provider": alert.get("detectionSource"),
        },
        "cloud": {"account": {"id": alert.get("aadTenantId") or event.get("tenant")},
                  "provider": "azure"},
        "organization": {"id": event.get("tenant"), "name": event.get("tenant_name")},
        "host": {"hostname": alert.get("computerDnsName"), "id": alert.get("machineId")},
        "observer": {"name": alert.get("detectionSource"), "vendor": "Microsoft",
                     "product": short_product(product)},
        "rule": {"name": alert.get("title"), "id": alert.get("detectorId"),
                 "category": alert.get("category")},
        "threat": {"technique": {"id": techniques}, "software": {"name": alert.get("threatName")}},
        "file": {"name": files[0].get("fileName"), "path": files[0].get("filePath"),
                 "hash": {"sha1": files[0].get("sha1"), "sha256": files[0].get("sha256")}}
        if files else {},
        "labels": {"device_group": alert.get("rbacGroupName"),
                   "dedupe_key": event.get("event_id"),
                   # who changed it, when the MSSP did (`user` is the alert's own user)
                   "changed_by": by.get("name"), "changed_by_id": by.get("id"),
                   "changed_via": by.get("via")},
        "microsoft": {kept: {**original, "status": original.get("status"),
                             "tenant_name": event.get("tenant_name")}},
    })
