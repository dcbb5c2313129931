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

MDE, GRAPH = "mde", "graph"
SCHEMAS = (MDE, GRAPH)
MDE_SOURCE = "microsoftDefenderForEndpoint"  # Graph's serviceSource of an endpoint alert
PORTAL_ALERT = "https://security.microsoft.com/alerts/{id}?tid={tenant}"
PORTAL_HOSTS = ("https://security.microsoft.com/", "https://security.microsoft.us/",
                "https://security.apps.mil/")

PRODUCTS = {  # Graph serviceSource -> the product's display name
    "microsoftDefenderForEndpoint": "Microsoft Defender for Endpoint",
    "microsoftDefenderForIdentity": "Microsoft Defender for Identity",
    "microsoftDefenderForCloudApps": "Microsoft Defender for Cloud Apps",
    "microsoftDefenderForOffice365": "Microsoft Defender for Office 365",
    "microsoft365Defender": "Microsoft Defender XDR",
    "azureAdIdentityProtection": "Microsoft Entra ID Protection",
    "microsoftEntraIdProtection": "Microsoft Entra ID Protection",
    "microsoftAppGovernance": "App governance",
    "dataLossPrevention": "Microsoft Purview Data Loss Prevention",
    "microsoftDefenderForCloud": "Microsoft Defender for Cloud",
    "microsoftSentinel": "Microsoft Sentinel",
    "microsoftInsiderRiskManagement": "Microsoft Purview Insider Risk Management",
}
# the products a rule's form offers: (serviceSource, display name), one a product
PRODUCT_CHOICES = tuple((source, name) for source, name in PRODUCTS.items()
                        if source != "azureAdIdentityProtection")
SEVERITY = {"unknown": "UnSpecified", "informational": "Informational", "low": "Low",
            "medium": "Medium", "high": "High"}
STATUS = {"unknown": "Unknown", "new": "New", "inProgress": "InProgress",
          "resolved": "Resolved", "unknownFutureValue": "Unknown"}
CLASSIFICATION = {"unknown": None, "unknownFutureValue": None,
                  "falsePositive": "FalsePositive", "truePositive": "TruePositive",
                  "informationalExpectedActivity": "InformationalExpectedActivity"}
DETERMINATION = {"unknown": None, "unknownFutureValue": None, "apt": "Apt",
                 "malware": "Malware", "securityPersonnel": "SecurityPersonnel",
                 "securityTesting": "SecurityTesting", "unwantedSoftware": "UnwantedSoftware",
                 "other": "Other", "multiStagedAttack": "MultiStagedAttack",
                 "compromisedAccount": "CompromisedAccount", "phishing": "Phishing",
                 "maliciousUserActivity": "MaliciousUserActivity",
                 "notMalicious": "NotMalicious", "notEnoughDataToValidate": "InsufficientData",
                 "confirmedUserActivity": "ConfirmedUserActivity",
                 "lineOfBusinessApplication": "LineOfBusinessApplication"}
DETECTION_SOURCE = {  # Graph's detectionSource -> Defender for Endpoint's, where it has one
    "antivirus": "WindowsDefenderAv", "microsoftDefenderForEndpoint": "EDR",
    "customDetection": "CustomDetection", "automatedInvestigation": "AutomatedInvestigation",
    "smartScreen": "WindowsDefenderSmartScreen", "customTi": "CustomerTI",
    "microsoftThreatExperts": "MTE", "microsoft365Defender": "MTP"}
ENTITY = {  # Graph evidence @odata.type (after the namespace) -> Defender's entityType
    "fileEvidence": "File", "processEvidence": "Process", "userEvidence": "User",
    "ipEvidence": "Ip", "urlEvidence": "Url", "registryKeyEvidence": "Registry",
    "registryValueEvidence": "Registry", "mailboxEvidence": "Mailbox",
    "analyzedMessageEvidence": "MailMessage", "mailClusterEvidence": "MailCluster",
    "cloudApplicationEvidence": "CloudApplication", "oauthApplicationEvidence": "OAuthApplication",
    "securityGroupEvidence": "SecurityGroup", "deviceEvidence": "Machine",
    "dnsEvidence": "Dns", "blobEvidence": "Blob", "azureResourceEvidence": "AzureResource",
}
EVIDENCE_KEYS = ("entityType", "fileName", "filePath", "sha1", "sha256", "processCommandLine",
                 "ipAddress", "url", "accountName", "domainName", "userPrincipalName",
                 "registryKey", "registryValue", "detectionStatus")


def _text(value: Any) -> str | None:
    """Text or None: a number becomes its text, a structure (not text) is dropped."""
    if type(value) is str or value is None:  # the usual cases first: it runs ~100x an alert
        return value
    if isinstance(value, dict | list | tuple):
        return None
    return value if isinstance(value, str) else str(value)


def _mapped(value: Any, table: Mapping[str, str | None]) -> str | None:
    """Graph's spelling in the hub's canonical one; an unknown value as it came."""
    text = _text(value)
    return table.get(text, text) if text is not None else None


def _upper_first(value: Any) -> str | None:
    text = _text(value)
    return text[:1].upper() + text[1:] if text else text


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _kind(item: Mapping[str, Any]) -> str:
    """An evidence item's type without its namespace ("fileEvidence")."""
    return (_text(item.get("@odata.type")) or "").rpartition(".")[2].lstrip("#")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(t for t in (_text(v) for v in value) if t) if isinstance(value, list) else ()


def product_name(service_source: str | None) -> str:
    """The display name of a Graph serviceSource (an unknown one as it is)."""
    if not service_source:
        return PRODUCTS[MDE_SOURCE]
    return PRODUCTS.get(service_source, service_source)


def short_product(name: str) -> str:
    """The product without the vendor ("Defender for Endpoint"): CEF and ECS name the
    vendor in a field of its own."""
    return name.removeprefix("Microsoft ").strip() or name


@dataclass(slots=True)
class Evidence:
    """One evidence item as a uniform row."""

    entity_type: str = ""
    file_name: str | None = None
    file_path: str | None = None
    sha1: str | None = None
    sha256: str | None = None
    command_line: str | None = None
    ip: str | None = None
    url: str | None = None
    account_name: str | None = None
    domain_name: str | None = None
    user_principal_name: str | None = None
    registry_key: str | None = None
    registry_value: str | None = None
    detection_status: str | None = None
    verdict: str | None = None

    @property
    def user(self) -> str:
        return self.user_principal_name or "\\".join(
            p for p in (self.domain_name, self.account_name) if p)

    def fields(self) -> dict[str, Any]:
        """Defender for Endpoint's names for it (absent values left out)."""
        values = (self.entity_type, self.file_name, self.file_path, self.sha1, self.sha256,
                  self.command_line, self.ip, self.url, self.account_name, self.domain_name,
                  self.user_principal_name, self.registry_key, self.registry_value,
                  self.detection_status)
        return {k: v for k, v in zip(EVIDENCE_KEYS, values, strict=True) if v is not None}

    @classmethod
    def of_mde(cls, item: Mapping[str, Any]) -> Evidence:
        return cls(_text(item.get("entityType")) or "", _text(item.get("fileName")),
                   _text(item.get("filePath")), _text(item.get("sha1")),
                   _text(item.get("sha256")), _text(item.get("processCommandLine")),
                   _text(item.get("ipAddress")), _text(item.get("url")),
                   _text(item.get("accountName")), _text(item.get("domainName")),
                   _text(item.get("userPrincipalName")), _text(item.get("registryKey")),
                   _text(item.get("registryValue")), _text(item.get("detectionStatus")),
                   _text(item.get("verdict")))

    @classmethod
    def of_graph(cls, item: Mapping[str, Any]) -> Evidence:
        kind = _kind(item)
        entity = ENTITY.get(kind) or _upper_first(kind.removesuffix("Evidence")) or ""
        file = _dict(item.get("fileDetails")) or _dict(item.get("imageFile"))
        account = _dict(item.get("userAccount"))
        urls = _list(item.get("urls"))
        return cls(
            entity_type=entity, file_name=_text(file.get("fileName")),
            file_path=_text(file.get("filePath")), sha1=_text(file.get("sha1")),
            sha256=_text(file.get("sha256")),
            command_line=_text(item.get("processCommandLine")),
            ip=_text(item.get("ipAddress")) or _text(item.get("senderIp")),
            url=_text(item.get("url")) or (_text(urls[0]) if urls else None),
            account_name=_text(account.get("accountName")),
            domain_name=_text(account.get("domainName")),
            user_principal_name=_text(account.get("userPrincipalName"))
            or _text(item.get("primaryAddress")) or _text(item.get("recipientEmailAddress")),
            registry_key=_text(item.get("registryKey")),
            registry_value=_text(item.get("registryValue")),
            detection_status=_upper_first(item.get("detectionStatus")),
            verdict=_upper_first(item.get("verdict")))


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
        this already (`mde_shaped` returns it as it is)."""
        user = ({"userName": self.user_name, "domainName": self.user_domain}
                if self.user_name or self.user_domain else None)
        return {
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


def mde_shaped(document: Mapping[str, Any], schema: str) -> Mapping[str, Any]:
    """The alert under Defender for Endpoint's names: an mde document as it is (so what
    is built from one stays byte for byte as before), a Graph one through the view."""
    if schema == MDE:
        return document
    return AlertView.of(document, schema).fields()


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
    text = _text(value)
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 19 \
        else text


def _of_mde(doc: Mapping[str, Any]) -> AlertView:
    user = _dict(doc.get("relatedUser"))
    alert_id = _text(doc.get("id")) or ""
    tenant = _text(doc.get("aadTenantId"))
    items = _list(doc.get("evidence"))
    return AlertView(
        schema=MDE, id=alert_id, provider_id=alert_id, title=_text(doc.get("title")),
        description=_text(doc.get("description")),
        recommended_action=_text(doc.get("recommendedAction")),
        severity=_text(doc.get("severity")), status=_text(doc.get("status")),
        classification=_text(doc.get("classification")),
        determination=_text(doc.get("determination")),
        assigned_to=_text(doc.get("assignedTo")), category=_text(doc.get("category")),
        detection_source=_text(doc.get("detectionSource")),
        detector_id=_text(doc.get("detectorId")), threat_name=_text(doc.get("threatName")),
        threat_family=_text(doc.get("threatFamilyName")),
        created=_text(doc.get("alertCreationTime")),
        first_activity=_text(doc.get("firstEventTime")),
        last_activity=_text(doc.get("lastEventTime")),
        last_update=_text(doc.get("lastUpdateTime")),
        resolved=_text(doc.get("resolvedTime")),
        device_name=_text(doc.get("computerDnsName")), device_id=_text(doc.get("machineId")),
        device_group=_text(doc.get("rbacGroupName")),
        user_name=_text(user.get("userName")), user_domain=_text(user.get("domainName")),
        mitre_techniques=_texts(doc.get("mitreTechniques")),
        incident_id=_incident(doc.get("incidentId")),
        investigation_id=_incident(doc.get("investigationId")),
        investigation_state=_text(doc.get("investigationState")), tenant_id=tenant,
        link=portal_alert_link(alert_id, tenant),
        evidence=tuple(Evidence.of_mde(i) for i in items if isinstance(i, dict)),
        evidence_count=len(items),
        comments=tuple(Comment(_text(c.get("comment")) or "", _text(c.get("createdBy")) or "",
                               _text(c.get("createdTime")) or "")
                       for c in _list(doc.get("comments")) if isinstance(c, dict)),
        document=doc)


def _of_graph(doc: Mapping[str, Any]) -> AlertView:
    alert_id = _text(doc.get("id")) or ""
    tenant = _text(doc.get("tenantId"))
    source = _text(doc.get("serviceSource")) or ""
    items = [i for i in _list(doc.get("evidence")) if isinstance(i, dict)]
    devices = [i for i in items if _kind(i) == "deviceEvidence"]
    device = devices[0] if devices else {}
    users = [_dict(i.get("userAccount")) for i in items if _kind(i) == "userEvidence"]
    user = next((u for u in users if u.get("accountName")), {})
    web = _text(doc.get("alertWebUrl")) or ""
    return AlertView(
        schema=GRAPH, id=alert_id, provider_id=_text(doc.get("providerAlertId")),
        title=_text(doc.get("title")), description=_text(doc.get("description")),
        recommended_action=_text(doc.get("recommendedActions")),
        severity=_mapped(doc.get("severity"), SEVERITY),
        status=_mapped(doc.get("status"), STATUS),
        classification=_mapped(doc.get("classification"), CLASSIFICATION),
        determination=_mapped(doc.get("determination"), DETERMINATION),
        assigned_to=_text(doc.get("assignedTo")), category=_text(doc.get("category")),
        product=product_name(source), service_source=source or MDE_SOURCE,
        detection_source=_mapped(doc.get("detectionSource"), DETECTION_SOURCE),
        detector_id=_text(doc.get("detectorId")),
        threat_name=_text(doc.get("threatDisplayName")),
        threat_family=_text(doc.get("threatFamilyName")),
        created=_text(doc.get("createdDateTime")),
        first_activity=_text(doc.get("firstActivityDateTime")),
        last_activity=_text(doc.get("lastActivityDateTime")),
        last_update=_text(doc.get("lastUpdateDateTime")),
        resolved=_text(doc.get("resolvedDateTime")),
        device_name=_text(device.get("deviceDnsName")),
        device_id=_text(device.get("mdeDeviceId")),
        device_group=_text(device.get("rbacGroupName")),
        user_name=_text(user.get("accountName")), user_domain=_text(user.get("domainName")),
        mitre_techniques=_texts(doc.get("mitreTechniques")),
        incident_id=_incident(doc.get("incidentId")),
        investigation_state=_text(doc.get("investigationState")), tenant_id=tenant,
        link=web if web.startswith(PORTAL_HOSTS) else portal_alert_link(alert_id, tenant),
        evidence=tuple(Evidence.of_graph(i) for i in items if i is not device),
        evidence_count=len(items) - (1 if devices else 0),
        comments=tuple(Comment(_text(c.get("comment")) or "",
                               _text(c.get("createdByDisplayName")) or "",
                               _text(c.get("createdDateTime")) or "")
                       for c in _list(doc.get("comments")) if isinstance(c, dict)),
        document=doc)


def event_alert(event: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str]:
    """(the alert under Defender for Endpoint's names, its product, its schema) of a
    feed or queue event (`event["alert"]` is the stored alert as received, or the event's
    summary, which is in those names already and names its product; an event from before
    the schema was kept is an mde one)."""
    alert = event.get("alert") if isinstance(event.get("alert"), dict) else {}
    schema = str(event.get("schema") or alert.get("schema") or MDE)
    if schema != MDE and "schema" not in alert and schema in SCHEMAS:  # as received
        view = AlertView.of(alert, schema)
        return view.fields(), view.product, schema
    return alert, str(alert.get("product") or PRODUCTS[MDE_SOURCE]), schema
