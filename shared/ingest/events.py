"""Alert events: what changed, and a summary of the alert small enough for a queue message."""

from __future__ import annotations

from typing import Any

from shared.alerts.view import MDE, MDE_SOURCE, PRODUCTS, AlertView, mde_shaped, parsed
from shared.messages import AlertEvent

TRACKED = ("lastUpdateTime", "status", "classification", "determination", "assignedTo")
SUMMARY_FIELDS = ("id", "title", "description", "severity", "status", "classification",
                  "determination", "assignedTo", "category", "detectionSource", "detectorId",
                  "threatName", "threatFamilyName", "alertCreationTime", "firstEventTime",
                  "lastEventTime", "lastUpdateTime", "resolvedTime", "incidentId",
                  "investigationId", "investigationState", "machineId", "computerDnsName",
                  "rbacGroupName", "aadTenantId", "mitreTechniques", "relatedUser")
EVIDENCE_FIELDS = ("entityType", "fileName", "filePath", "sha1", "sha256",
                   "processCommandLine", "ipAddress", "url", "accountName", "domainName",
                   "userPrincipalName", "registryKey", "registryValue", "detectionStatus")
MAX_MESSAGE_BYTES = 40_000  # base64 makes it ~53 KB of the 64 KB queue limit


def tracked(alert: dict[str, Any], version: str, schema: str = MDE,
            view: AlertView | None = None) -> list[Any]:
    """The index entry: normalized version and the fields whose change matters, then the
    severity (so an update's event says what it was: the tenant summaries move it).
    In the canonical spelling (`schema`: the API the alert came from; `view`: the alert
    parsed already, shared/alerts/view.py `parsed`)."""
    fields = mde_shaped(alert, schema, view)
    return [version] + [fields.get(name) for name in TRACKED[1:]] + [fields.get("severity")]


def same(old: list[Any], new: list[Any]) -> bool:
    """Nothing to tell: an entry written before severity was kept compares without it."""
    return old == new[:len(old)]


def changes(old: list[Any] | None, new: list[Any]) -> dict[str, list[Any]]:
    if old is None:
        return {}
    width = len(TRACKED)
    found = {name: [a, b] for name, a, b in zip(TRACKED, old[:width], new[:width], strict=True)
             if a != b}
    if len(old) > width and old[width] != new[width]:  # an older entry knows no severity
        found["severity"] = [old[width], new[width]]
    return found


def _clipped(values: dict[str, Any], fields: tuple[str, ...], limit: int,
             keep_none: bool = False) -> dict[str, Any]:
    """The fields of `values` (with `keep_none`, all of them), strings cut at `limit`.
    A plain loop: it runs for every field of every evidence item of every new or changed
    alert, and was ~25% faster than a comprehension with an assignment expression."""
    out = {}
    for k in fields:
        v = values.get(k)
        if v is None:
            if keep_none:
                out[k] = v
            continue
        if type(v) is str and len(v) > limit:
            v = v[:limit] + "…"
        out[k] = v
    return out


def summary(alert: dict[str, Any], string_limit: int = 2_000, evidence_items: int = 20,
            schema: str = MDE, view: AlertView | None = None) -> dict[str, Any]:
    """The alert's fields a notification or SIEM line needs, with evidence in brief: under
    Defender for Endpoint's names and spellings whichever API the alert came from
    (`schema`; `view`: the alert parsed already), with the schema and the product
    (display name and Graph serviceSource)."""
    if schema == MDE:
        fields: dict[str, Any] = alert
        product, source = PRODUCTS[MDE_SOURCE], MDE_SOURCE
    else:
        view = view or AlertView.of(alert, schema)
        fields, product, source = view.fields(), view.product, view.service_source
    out = _clipped(fields, SUMMARY_FIELDS, string_limit, keep_none=True)
    out["schema"], out["product"], out["serviceSource"] = schema, product, source
    evidence = fields.get("evidence") or []
    out["evidenceCount"] = len(evidence)
    limit = min(string_limit, 512)
    out["evidence"] = [_clipped(item, EVIDENCE_FIELDS, limit)
                       for item in evidence[:evidence_items] if isinstance(item, dict)]
    return out


def build_event(tenant_id: str, tenant_name: str, alert: dict[str, Any], version: str,
                old: list[Any] | None, new: list[Any], by: dict[str, str] | None = None,
                schema: str = MDE, *, alert_id: str | None = None,
                view: AlertView | None = None) -> AlertEvent:
    """An event whose message stays under the queue's size limit, however big the alert.
    `by`: who made the change, when the MSSP made it itself; `schema`: the API the alert
    came from ("mde" or "graph"); `alert_id`: its key (else its `id`: a Graph endpoint
    alert's is its Defender for Endpoint id, shared/ingest/schemas.py); `view`: the
    alert parsed already."""
    return _fitted(tenant_id, tenant_name, alert, version, old, new, by, schema,
                   alert_id, view)[0]


def event_message(tenant_id: str, tenant_name: str, alert: dict[str, Any], version: str,
                  old: list[Any] | None, new: list[Any], by: dict[str, str] | None = None,
                  schema: str = MDE, *, alert_id: str | None = None,
                  view: AlertView | None = None) -> bytes:
    """`build_event`'s message as the JSON it was measured in (serialized once)."""
    return _fitted(tenant_id, tenant_name, alert, version, old, new, by, schema,
                   alert_id, view)[1]


def _fitted(tenant_id: str, tenant_name: str, alert: dict[str, Any], version: str,
            old: list[Any] | None, new: list[Any], by: dict[str, str] | None,
            schema: str = MDE, alert_id: str | None = None, view: AlertView | None = None
            ) -> tuple[AlertEvent, bytes]:
    view = view or parsed(alert, schema)  # once, whatever the tries to fit the message
    for limit, items in ((2_000, 20), (500, 10), (200, 3), (100, 0)):
        event = AlertEvent(tenant_id, tenant_name, alert_id or str(alert["id"]), version,
                           "new" if old is None else "updated", changes(old, new),
                           summary(alert, limit, items, schema, view), by=by)
        data = event.to_bytes()
        if len(data) <= MAX_MESSAGE_BYTES:
            break
    return event, data
