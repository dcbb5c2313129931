"""One normalised view of an alert, whichever API stored it: Defender for Endpoint's
`/api/alerts` ("mde") or Microsoft Graph's `/security/alerts_v2` ("graph").

Why: rules, emails, the portal and the SIEM formats were written against Defender for
Endpoint's field names and enum spellings. The hub's canonical spelling stays Defender's
(severity Informational/Low/Medium/High, status New/InProgress/Resolved, classification
TruePositive...), so an mde alert reads exactly as before and a Graph alert is mapped onto
it. Every value is attacker-influenced text (titles, command lines, file names) and
Microsoft adds enum values over time: whatever is not known passes through as text, and
no document, however malformed, raises here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from shared.alerts.evidence import Evidence
from shared.alerts.spelling import (  # noqa: F401 (re-exported: consumers import the view)
    CLASSIFICATION,
    DETECTION_SOURCE,
    DETERMINATION,
    MDE_SOURCE,
    PRODUCT_CHOICES,
    PRODUCTS,
    SEVERITY,
    STATUS,
    product_name,
    short_product,
)
from shared.alerts.values import as_dict, as_list, kind, mapped, text, texts

MDE, GRAPH = "mde", "graph"
SCHEMAS = (MDE, GRAPH)
VERSION_FIELD = {MDE: "lastUpdateTime", GRAPH: "lastUpdateDateTime"}  # an alert's version
PORTAL_ALERT = "https://security.microsoft.com/alerts/{id}?tid={tenant}"
PORTAL_HOSTS = ("https://security.microsoft.com/", "https://security.microsoft.us/",
                "https://security.apps.mil/")


@dataclass(slots=True)
class Comment:
    text: str
    by: str
    at: str


@dataclass(slots=True)
class AlertView:
    """What every consumer reads of an alert, in the hub's canonical spelling (a plain
    dataclass: a frozen one's set-up cost twice as much, and the view is built per alert
    by every consumer)."""

    schema: str
    id: str
    provider_id: str | None = None
    title: str | None = None
    description: str | None = None
    recommended_action: str | None = None
    severity: str | None = None
    status: str | None = None
    classification: str | None = None
    determination: str | None = None
    assigned_to: str | None = None
    category: str | None = None
    product: str = PRODUCTS[MDE_SOURCE]
    service_source: str = MDE_SOURCE
    detection_source: str | None = None
    detector_id: str | None = None
    threat_name: str | None = None
    threat_family: str | None = None
    created: str | None = None
    first_activity: str | None = None
    last_activity: str | None = None
    last_update: str | None = None
    resolved: str | None = None
    device_name: str | None = None
    device_id: str | None = None
    device_group: str | None = None
    user_name: str | None = None
    user_domain: str | None = None
    mitre_techniques: tuple[str, ...] = ()
    incident_id: int | str | None = None
    investigation_id: int | str | None = None
    investigation_state: str | None = None
    tenant_id: str | None = None
    link: str = ""
    evidence: tuple[Evidence, ...] = ()
    evidence_count: int = 0
    comments: tuple[Comment, ...] = ()
    document: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _fields: dict[str, Any] | None = field(default=None, init=False, repr=False,
                                           compare=False)

    @classmethod
    def of(cls, document: Mapping[str, Any], schema: str) -> AlertView:
        """The view of `document` as `schema`'s API returned it ("mde" or "graph")."""
        if schema == MDE:
            return _of_mde(document)
        if schema == GRAPH:
            return _of_graph(document)
        raise ValueError(f"unknown alert schema: {schema!r}")

    @property
    def user(self) -> str:
        return "\\".join(p for p in (self.user_domain, self.user_name) if p)

    def fields(self) -> dict[str, Any]:
        """The alert under Defender for Endpoint's field names: what the event summary,
        the Alerts row, the index entry and the SIEM formats read. An mde document is
        this already (`mde_shaped` returns it as it is). Built once per view and shared
        by the step's consumers (the row, the index entry, the event summary): read it,
        never change it."""
        if self._fields is not None:
            return self._fields
        user = ({"userName": self.user_name, "domainName": self.user_domain}
                if self.user_name or self.user_domain else None)
        self._fields = {
            "id": self.id, "title": self.title, "description": self.description,
            "recommendedAction": self.recommended_action, "severity": self.severity,
            "status": self.status, "classification": self.classification,
            "determination": self.determination, "assignedTo": self.assigned_to,
            "category": self.category, "detectionSource": self.detection_source,
            "detectorId": self.detector_id, "threatName": self.threat_name,
            "threatFamilyName": self.threat_family, "alertCreationTime": self.created,
            "firstEventTime": self.first_activity, "lastEventTime": self.last_activity,
            "lastUpdateTime": self.last_update, "resolvedTime": self.resolved,
            "incidentId": self.incident_id, "investigationId": self.investigation_id,
            "investigationState": self.investigation_state, "machineId": self.device_id,
            "computerDnsName": self.device_name, "rbacGroupName": self.device_group,
            "aadTenantId": self.tenant_id, "mitreTechniques": list(self.mitre_techniques),
            "relatedUser": user, "evidence": [e.fields() for e in self.evidence],
            "comments": [{"comment": c.text, "createdBy": c.by, "createdTime": c.at}
                         for c in self.comments],
            "providerAlertId": self.provider_id, "serviceSource": self.service_source,
            "alertWebUrl": self.link,
        }
        return self._fields


def parsed(document: Mapping[str, Any], schema: str) -> AlertView | None:
    """The view a step passes to its consumers (None for an mde document, which is in
    the canonical names already): a Graph alert is parsed once per step, not once per
    consumer."""
    return None if schema == MDE else AlertView.of(document, schema)


def mde_shaped(document: Mapping[str, Any], schema: str,
               view: AlertView | None = None) -> Mapping[str, Any]:
    """The alert under Defender for Endpoint's names: an mde document as it is (so what
    is built from one stays byte for byte as before), a Graph one through the view
    (`view`: the step's, if it parsed the document already)."""
    if schema == MDE:
        return document
    return (view or AlertView.of(document, schema)).fields()


def portal_alert_link(alert_id: str, tenant_id: str | None) -> str:
    """Defender's deep link to an alert ("" without the tenant)."""
    if not tenant_id:
        return ""
    return PORTAL_ALERT.format(id=quote(alert_id, safe=""), tenant=quote(tenant_id, safe=""))


def _incident(value: Any) -> int | str | None:
    """Defender's incident ids are numbers; Graph sends them as text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    found = text(value)
    return int(found) if found and found.isascii() and found.isdigit() and len(found) < 19 \
        else found


def _of_mde(doc: Mapping[str, Any]) -> AlertView:
    user = as_dict(doc.get("relatedUser"))
    alert_id = text(doc.get("id")) or ""
    tenant = text(doc.get("aadTenantId"))
    items = as_list(doc.get("evidence"))
    return AlertView(
        schema=MDE, id=alert_id, provider_id=alert_id, title=text(doc.get("title")),
        description=text(doc.get("description")),
        recommended_action=text(doc.get("recommendedAction")),
        severity=text(doc.get("severity")), status=text(doc.get("status")),
        classification=text(doc.get("classification")),
        determination=text(doc.get("determination")),
        assigned_to=text(doc.get("assignedTo")), category=text(doc.get("category")),
        detection_source=text(doc.get("detectionSource")),
        detector_id=text(doc.get("detectorId")), threat_name=text(doc.get("threatName")),
        threat_family=text(doc.get("threatFamilyName")),
        created=text(doc.get("alertCreationTime")),
        first_activity=text(doc.get("firstEventTime")),
        last_activity=text(doc.get("lastEventTime")),
        last_update=text(doc.get("lastUpdateTime")),
        resolved=text(doc.get("resolvedTime")),
        device_name=text(doc.get("computerDnsName")), device_id=text(doc.get("machineId")),
        device_group=text(doc.get("rbacGroupName")),
        user_name=text(user.get("userName")), user_domain=text(user.get("domainName")),
        mitre_techniques=texts(doc.get("mitreTechniques")),
        incident_id=_incident(doc.get("incidentId")),
        investigation_id=_incident(doc.get("investigationId")),
        investigation_state=text(doc.get("investigationState")), tenant_id=tenant,
        link=portal_alert_link(alert_id, tenant),
        evidence=tuple(Evidence.of_mde(i) for i in items if isinstance(i, dict)),
        evidence_count=len(items),
        comments=tuple(Comment(text(c.get("comment")) or "", text(c.get("createdBy")) or "",
                               text(c.get("createdTime")) or "")
                       for c in as_list(doc.get("comments")) if isinstance(c, dict)),
        document=doc)


def _of_graph(doc: Mapping[str, Any]) -> AlertView:
    alert_id = text(doc.get("id")) or ""
    tenant = text(doc.get("tenantId"))
    source = text(doc.get("serviceSource")) or ""
    items = [i for i in as_list(doc.get("evidence")) if isinstance(i, dict)]
    devices = [i for i in items if kind(i) == "deviceEvidence"]
    device = devices[0] if devices else {}
    users = [as_dict(i.get("userAccount")) for i in items if kind(i) == "userEvidence"]
    user = next((u for u in users if u.get("accountName")), {})
    web = text(doc.get("alertWebUrl")) or ""
    return AlertView(
        schema=GRAPH, id=alert_id, provider_id=text(doc.get("providerAlertId")),
        title=text(doc.get("title")), description=text(doc.get("description")),
        recommended_action=text(doc.get("recommendedActions")),
        severity=mapped(doc.get("severity"), SEVERITY),
        status=mapped(doc.get("status"), STATUS),
        classification=mapped(doc.get("classification"), CLASSIFICATION),
        determination=mapped(doc.get("determination"), DETERMINATION),
        assigned_to=text(doc.get("assignedTo")), category=text(doc.get("category")),
        product=product_name(source), service_source=source or MDE_SOURCE,
        detection_source=mapped(doc.get("detectionSource"), DETECTION_SOURCE),
        detector_id=text(doc.get("detectorId")),
        threat_name=text(doc.get("threatDisplayName")),
        threat_family=text(doc.get("threatFamilyName")),
        created=text(doc.get("createdDateTime")),
        first_activity=text(doc.get("firstActivityDateTime")),
        last_activity=text(doc.get("lastActivityDateTime")),
        last_update=text(doc.get("lastUpdateDateTime")),
        resolved=text(doc.get("resolvedDateTime")),
        device_name=text(device.get("deviceDnsName")),
        device_id=text(device.get("mdeDeviceId")),
        device_group=text(device.get("rbacGroupName")),
        user_name=text(user.get("accountName")), user_domain=text(user.get("domainName")),
        mitre_techniques=texts(doc.get("mitreTechniques")),
        incident_id=_incident(doc.get("incidentId")),
        investigation_state=text(doc.get("investigationState")), tenant_id=tenant,
        link=web if web.startswith(PORTAL_HOSTS) else portal_alert_link(alert_id, tenant),
        evidence=tuple(Evidence.of_graph(i) for i in items if i is not device),
        evidence_count=len(items) - (1 if devices else 0),
        comments=tuple(Comment(text(c.get("comment")) or "",
                               text(c.get("createdByDisplayName")) or "",
                               text(c.get("createdDateTime")) or "")
                       for c in as_list(doc.get("comments")) if isinstance(c, dict)),
        document=doc)


# (the alert under Defender for Endpoint's names, its product, its schema): `event_alert`
Seen = tuple[Mapping[str, Any], str, str]


def event_alert(event: Mapping[str, Any]) -> Seen:
    """(the alert under Defender for Endpoint's names, its product, its schema) of a
    feed or queue event (`event["alert"]` is the stored alert as received, or the event's
    summary, which is in those names already and names its product; an event from before
    the schema was kept is an mde one). A formatter that needs it twice for one event
    takes it once and passes it on (a Graph alert is parsed here)."""
    alert = event.get("alert") if isinstance(event.get("alert"), dict) else {}
    schema = str(event.get("schema") or alert.get("schema") or MDE)
    if schema != MDE and "schema" not in alert and schema in SCHEMAS:  # as received
        view = AlertView.of(alert, schema)
        return view.fields(), view.product, schema
    return alert, str(alert.get("product") or PRODUCTS[MDE_SOURCE]), schema
