"""Cross-tenant cluster events in the SIEM formats, as their own event type: a CEF line
whose signature is `cluster`, an ECS threat-indicator document (`event.kind:
enrichment`, `threat.indicator.*`) in dataset `mssp_hub.cluster`, and the JSON document
of HEC, webhooks and the pull API. The hub made the correlation, so the hub is the
device (not Microsoft). Only the MSSP's own outputs get these: a cluster names customers
(shared/storage/siem_feed.py MSSP_ONLY)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.messages import highest_severity
from shared.siem.cef import SEVERITY as CEF_SEVERITY
from shared.siem.cef import cef_line, millis
from shared.siem.ecs import SEVERITY as ECS_SEVERITY
from shared.siem.ecs import drop_empty

CLUSTER = "cluster"
VENDOR, PRODUCT, PRODUCT_VERSION = "mssp-hub", "Cross-tenant correlation", "1.0"
KIND_NAMES = {"sha256": "SHA256", "sha1": "SHA1", "ip": "IP address", "domain": "domain",
              "url": "URL", "file_name": "file name"}


def is_cluster(event: Mapping[str, Any]) -> bool:
    return event.get("type") == CLUSTER


def cluster_severity(event: Mapping[str, Any]) -> str | None:
    return highest_severity(event.get("severities"))


def _tenants(event: Mapping[str, Any], name: str = "tenants") -> list[dict[str, Any]]:
    found = event.get(name)
    return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []


def title(event: Mapping[str, Any]) -> str:
    kind = str(event.get("indicator_kind") or "")
    return (f"{KIND_NAMES.get(kind, kind)} seen at {len(_tenants(event))} customers: "
            f"{event.get('indicator') or ''}")


def cluster_cef(event: Mapping[str, Any]) -> str:
    """One CEF line of a cluster version (every value escaped as for alerts): `cnt` its
    reach, the indicator in cs1/cs2 (and `fileHash`, `fname` or `request` by kind)."""
    kind, value = str(event.get("indicator_kind") or ""), event.get("indicator")
    header = [VENDOR, PRODUCT, PRODUCT_VERSION, CLUSTER, title(event)[:512],
              CEF_SEVERITY.get(str(cluster_severity(event)), 0)]
    tenants = _tenants(event)
    pairs: list[tuple[str, Any]] = [
        ("rt", millis(event.get("last_seen"))), ("start", millis(event.get("first_seen"))),
        ("end", millis(event.get("last_seen"))), ("externalId", event.get("key")),
        ("msg", title(event)), ("act", event.get("change")), ("cnt", len(tenants)),
        ({"sha256": "fileHash", "sha1": "fileHash", "file_name": "fname",
          "url": "request"}.get(kind, ""), value),
    ]
    custom = [("cs1", "IndicatorType", kind), ("cs2", "Indicator", value),
              ("cs3", "TenantIds", ",".join(str(t.get("id")) for t in tenants)),
              ("cs4", "TenantNames", "; ".join(str(t.get("name") or "") for t in tenants)),
              ("cs5", "JoinedTenantIds",
               ",".join(str(t.get("id")) for t in _tenants(event, "joined"))),
              ("cs6", "DedupeKey", event.get("event_id")),
              ("cn1", "AlertCount", event.get("alert_count")),
              ("cn2", "ClusterVersion", event.get("version"))]
    return cef_line(header, pairs, custom)


def _indicator(kind: str, value: Any) -> dict[str, Any]:
    """ECS's threat.indicator type and the typed field that holds the value."""
    text = str(value or "")
    if kind in ("sha256", "sha1"):
        return {"type": "file", "file": {"hash": {kind: text}}}
    if kind == "file_name":
        return {"type": "file", "file": {"name": text}}
    if kind == "ip":
        return {"type": "ipv6-addr" if ":" in text else "ipv4-addr", "ip": text}
    if kind == "domain":
        return {"type": "domain-name", "url": {"domain": text}}
    if kind == "url":
        return {"type": "url", "url": {"full": text, "original": text}}
    return {"type": kind}


def cluster_ecs(event: Mapping[str, Any]) -> dict[str, Any]:
    """An ECS threat-indicator document of a cluster version; the cluster itself (tenants,
    joined, severities) kept under `mssp_hub.cluster`."""
    tenants = _tenants(event)
    doc = {
        "@timestamp": event.get("last_seen"),
        "message": title(event),
        "event": {"id": event.get("key"), "kind": "enrichment", "category": ["threat"],
                  "type": ["indicator"], "module": "mssp_hub",
                  "dataset": "mssp_hub.cluster", "action": event.get("change"),
                  "severity": ECS_SEVERITY.get(str(cluster_severity(event)), 0),
                  "start": event.get("first_seen"), "end": event.get("last_seen")},
        "threat": {"indicator": {
            **_indicator(str(event.get("indicator_kind") or ""), event.get("indicator")),
            "first_seen": event.get("first_seen"), "last_seen": event.get("last_seen"),
            "sightings": event.get("alert_count"), "provider": VENDOR,
            "description": title(event)}},
        "observer": {"vendor": VENDOR, "product": PRODUCT},
        "labels": {"dedupe_key": event.get("event_id")},
        "mssp_hub": {"cluster": {
            "key": event.get("key"), "version": event.get("version"),
            "change": event.get("change"), "reach": len(tenants),
            "indicator": {"kind": event.get("indicator_kind"),
                          "value": event.get("indicator")},
            "tenants": tenants, "joined": _tenants(event, "joined"),
            "alert_count": event.get("alert_count"),
            "severities": dict(event.get("severities") or {})}},
    }
    return drop_empty(doc)


FIELDS = ("indicator_kind", "indicator", "key", "version", "change", "tenants", "joined",
          "first_seen", "last_seen", "alert_count", "severities")


def cluster_document(event: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON of a cluster version for HEC and webhooks."""
    return {"type": CLUSTER, "event_id": event["event_id"],
            "feed_time": event.get("feed_time"), "reach": len(_tenants(event)),
            **{name: event.get(name) for name in FIELDS}}
