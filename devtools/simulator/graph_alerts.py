"""Microsoft Graph security alerts (alerts_v2), shaped as Microsoft's documented examples.

Two kinds: a tenant's endpoint alerts are the ones `/api/alerts` serves, seen through the
v2 schema (`from_mde`: same id, `providerAlertId` the same, one state: an update to the
Defender alert is what Graph shows next); the other products' alerts (Office 365, Identity,
Cloud Apps, Entra ID Protection) exist in the v2 schema only (`GraphAlertFactory`).
Pure functions: no world, no lock.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from devtools.simulator.clock import TICKS_PER_SECOND, format_ticks
from devtools.simulator.odata import Schema

MDE = "microsoftDefenderForEndpoint"
OFFICE = "microsoftDefenderForOffice365"
IDENTITY = "microsoftDefenderForIdentity"
CLOUD_APPS = "microsoftDefenderForCloudApps"
# Entra ID Protection keeps its old name in Graph's serviceSource enum
ENTRA_ID_PROTECTION = "azureAdIdentityProtection"
PRODUCTS = (MDE, OFFICE, IDENTITY, CLOUD_APPS, ENTRA_ID_PROTECTION)
SERVICE_SOURCES = ("unknown", *PRODUCTS, "microsoft365Defender", "microsoftAppGovernance",
                   "dataLossPrevention", "unknownFutureValue", "microsoftDefenderForCloud",
                   "microsoftSentinel", "microsoftInsiderRiskManagement")
STATUSES = ("unknown", "new", "inProgress", "resolved", "unknownFutureValue")
SEVERITIES = ("unknown", "informational", "low", "medium", "high", "unknownFutureValue")
CLASSIFICATIONS = ("unknown", "falsePositive", "truePositive",
                   "informationalExpectedActivity", "unknownFutureValue")
DETERMINATIONS = ("unknown", "apt", "malware", "securityPersonnel", "securityTesting",
                  "unwantedSoftware", "other", "multiStagedAttack", "compromisedAccount",
                  "phishing", "maliciousUserActivity", "notMalicious",
                  "notEnoughDataToValidate", "confirmedUserActivity",
                  "lineOfBusinessApplication", "unknownFutureValue")
TIME_FIELDS = ("createdDateTime", "lastUpdateDateTime", "resolvedDateTime",
               "firstActivityDateTime", "lastActivityDateTime")
# what List alerts_v2 documents for $filter
ALERT_SCHEMA = Schema(
    "microsoft.graph.security.alert", ("createdDateTime", "lastUpdateDateTime"),
    {"status": STATUSES, "severity": SEVERITIES, "classification": CLASSIFICATIONS,
     "determination": DETERMINATIONS, "serviceSource": SERVICE_SOURCES},
    ("assignedTo",))

# Defender's names where the v2 enum spells them differently (else: lower camel case);
# detectionSource's members as Graph documents them (security-detectionsource)
_DETERMINATION = {"CompromisedUser": "compromisedAccount", "Clean": "notMalicious",
                  "InsufficientData": "notEnoughDataToValidate",
                  "ConfirmedActivity": "confirmedUserActivity", "Apt": "apt"}
_DETECTION_SOURCE = {"WindowsDefenderAtp": "microsoftDefenderForEndpoint",
                     "WindowsDefenderAv": "antivirus", "WindowsDefenderSmartScreen":
                     "smartScreen", "CustomerTI": "customTi", "CustomDetection":
                     "customDetection", "OfficeATP": "microsoftDefenderForOffice365",
                     "MCAS": "cloudAppSecurity", "AzureATP":
                     "microsoftDefenderForIdentity", "AutomatedInvestigation":
                     "automatedInvestigation", "ThreatExperts": "microsoftThreatExperts"}
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES[:5])}


def camel(value: Any, default: str | None = "unknown") -> Any:
    """Defender's PascalCase enum member to Graph's lower camel case (anything else, as
    a captured alert may carry, as it is)."""
    if not value:
        return default
    return value[0].lower() + value[1:] if isinstance(value, str) else value


def highest(severities: list[Any]) -> str:
    known = [s for s in severities if isinstance(s, str) and s in _SEVERITY_RANK]
    return max(known, key=_SEVERITY_RANK.__getitem__, default="unknown")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def alert_url(alert_id: str, tenant_id: str) -> str:
    return f"https://security.microsoft.com/alerts/{alert_id}?tid={tenant_id}"


def incident_url(incident_id: str, tenant_id: str) -> str:
    return f"https://security.microsoft.com/incidents/{incident_id}?tid={tenant_id}"


def _evidence_base(created: str | None, roles: list[str], verdict: str = "suspicious"
                   ) -> dict[str, Any]:
    return {"createdDateTime": created, "verdict": verdict, "remediationStatus": "none",
            "remediationStatusDetails": None, "roles": roles, "detailedRoles": [],
            "tags": []}


def _account(name: str | None, domain: str | None, sid: str | None = None,
             aad_id: str | None = None, upn: str | None = None) -> dict[str, Any]:
    return {"accountName": name, "domainName": domain, "userSid": sid,
            "azureAdUserId": aad_id, "userPrincipalName": upn, "displayName": name}


def _file(sha1: str | None, sha256: str | None, name: str | None, path: str | None
          ) -> dict[str, Any]:
    return {"sha1": sha1, "sha256": sha256, "fileName": name, "filePath": path,
            "fileSize": None, "filePublisher": None, "signer": None, "issuer": None}


def _mde_evidence(item: dict[str, Any], device_id: str | None) -> dict[str, Any] | None:
    """One Defender evidence entity as its typed v2 evidence (None: no v2 counterpart)."""
    kind, created = item.get("entityType"), item.get("evidenceCreationTime")
    if kind == "User":
        return {"@odata.type": "#microsoft.graph.security.userEvidence",
                **_evidence_base(created, ["compromised"]),
                "userAccount": _account(item.get("accountName"), item.get("domainName"),
                                        item.get("userSid"), item.get("aadUserId"),
                                        item.get("userPrincipalName")), "stream": None}
    if kind == "Process":
        return {"@odata.type": "#microsoft.graph.security.processEvidence",
                **_evidence_base(created, []), "processId": item.get("processId"),
                "parentProcessId": item.get("parentProcessId"),
                "processCommandLine": item.get("processCommandLine"),
                "processCreationDateTime": item.get("processCreationTime"),
                "parentProcessCreationDateTime": item.get("parentProcessCreationTime"),
                "detectionStatus": camel(item.get("detectionStatus"), None),
                "mdeDeviceId": device_id,
                "imageFile": _file(item.get("sha1"), item.get("sha256"),
                                   item.get("fileName"), item.get("filePath")),
                "parentProcessImageFile": _file(None, None,
                                                item.get("parentProcessFileName"),
                                                item.get("parentProcessFilePath")),
                "userAccount": None}
    if kind == "File":
        return {"@odata.type": "#microsoft.graph.security.fileEvidence",
                **_evidence_base(created, ["attacker"], "malicious"),
                "detectionStatus": camel(item.get("detectionStatus"), None),
                "mdeDeviceId": device_id,
                "fileDetails": _file(item.get("sha1"), item.get("sha256"),
                                     item.get("fileName"), item.get("filePath"))}
    if kind == "Ip":
        return {"@odata.type": "#microsoft.graph.security.ipEvidence",
                **_evidence_base(created, ["attacker"]), "ipAddress": item.get("ipAddress"),
                "countryLetterCode": None}
    if kind == "Url":
        return {"@odata.type": "#microsoft.graph.security.urlEvidence",
                **_evidence_base(created, ["attacker"]), "url": item.get("url")}
    if kind == "Registry":
        return {"@odata.type": "#microsoft.graph.security.registryValueEvidence",
                **_evidence_base(created, []), "registryKey": item.get("registryKey"),
                "registryHive": item.get("registryHive"),
                "registryValueType": item.get("registryValueType"),
                "registryValue": item.get("registryValue"), "registryValueName": None,
                "mdeDeviceId": device_id}
    return None


def from_mde(raw: dict[str, Any]) -> dict[str, Any]:
    """A Defender for Endpoint alert (as `/api/alerts` serves it) in the v2 schema: the
    same id and state, Graph's names and enums, typed evidence with the device first."""
    alert_id, tenant_id = raw["id"], raw.get("aadTenantId") or ""
    incident = raw.get("incidentId")
    incident_id = str(incident) if incident is not None else None
    device_id, created = raw.get("machineId"), raw.get("alertCreationTime")
    evidence: list[dict[str, Any]] = []
    if raw.get("computerDnsName") or device_id:
        evidence.append({
            "@odata.type": "#microsoft.graph.security.deviceEvidence",
            **_evidence_base(created, ["compromised"]),
            "firstSeenDateTime": raw.get("firstEventTime"), "mdeDeviceId": device_id,
            "azureAdDeviceId": None, "deviceDnsName": raw.get("computerDnsName"),
            "osPlatform": "Windows10", "osBuild": None, "version": None,
            "healthStatus": "active", "riskScore": camel(raw.get("severity"), "none"),
            "rbacGroupId": None, "rbacGroupName": raw.get("rbacGroupName"),
            "onboardingStatus": "onboarded", "defenderAvStatus": "unknown",
            "ipInterfaces": [], "loggedOnUsers": [], "vmMetadata": None})
    for item in _listed(raw.get("evidence")):
        typed = _mde_evidence(item, device_id) if isinstance(item, dict) else None
        if typed is not None:
            evidence.append(typed)
    determination = raw.get("determination")
    return {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": alert_id, "providerAlertId": alert_id, "incidentId": incident_id,
        "status": camel(raw.get("status")),
        "severity": "unknown" if raw.get("severity") in (None, "UnSpecified")
        else camel(raw.get("severity")),
        "classification": camel(raw.get("classification")),
        "determination": _DETERMINATION.get(determination, camel(determination))
        if isinstance(determination, str) else camel(determination),
        "serviceSource": MDE,
        "detectionSource": _DETECTION_SOURCE.get(str(raw.get("detectionSource")),
                                                 camel(raw.get("detectionSource"))),
        "productName": "Microsoft Defender for Endpoint",
        "detectorId": raw.get("detectorId"), "tenantId": tenant_id,
        "title": raw.get("title"), "description": raw.get("description"),
        "recommendedActions": "Review the device timeline around the alert; isolate the "
                              "device if the activity is not expected.",
        "category": raw.get("category"), "assignedTo": raw.get("assignedTo"),
        "alertWebUrl": alert_url(alert_id, tenant_id),
        "incidentWebUrl": incident_url(incident_id, tenant_id) if incident_id else None,
        "actorDisplayName": None, "threatDisplayName": raw.get("threatName"),
        "threatFamilyName": raw.get("threatFamilyName"),
        "mitreTechniques": list(_listed(raw.get("mitreTechniques"))),
        "createdDateTime": created, "lastUpdateDateTime": raw.get("lastUpdateTime"),
        "resolvedDateTime": raw.get("resolvedTime"),
        "firstActivityDateTime": raw.get("firstEventTime"),
        "lastActivityDateTime": raw.get("lastEventTime"),
        "comments": [{"comment": c.get("comment"), "createdByDisplayName": c.get("createdBy"),
                      "createdDateTime": c.get("createdTime")}
                     for c in _listed(raw.get("comments")) if isinstance(c, dict)],
        "evidence": evidence, "systemTags": [],
        "alertPolicyId": None, "additionalData": {},
    }


# (serviceSource, title, category, detectionSource, MITRE techniques, evidence kinds)
PLAYBOOK: dict[str, tuple[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], ...]] = {
    OFFICE: (
        ("Email messages containing malicious URL removed after delivery", "InitialAccess",
         "microsoftDefenderForOffice365", ("T1566.002",), ("message", "mailbox", "url")),
        ("A potentially malicious URL click was detected", "InitialAccess",
         "microsoftDefenderForOffice365", ("T1204.001",), ("user", "url", "message", "mailbox")),
        ("Email reported by user as malware or phish", "InitialAccess",
         "microsoftDefenderForOffice365", ("T1566.001",), ("message", "mailbox", "url")),
    ),
    IDENTITY: (
        ("Suspected DCSync attack (replication of directory services)", "CredentialAccess",
         "microsoftDefenderForIdentity", ("T1003.006",), ("user", "device", "ip")),
        ("Suspected Kerberos SPN exposure", "CredentialAccess",
         "microsoftDefenderForIdentity", ("T1558.003",), ("user", "device")),
        ("Account enumeration reconnaissance", "Discovery", "microsoftDefenderForIdentity",
         ("T1087.002",), ("device", "ip")),
    ),
    CLOUD_APPS: (
        ("Impossible travel activity", "InitialAccess", "cloudAppSecurity",
         ("T1078",), ("user", "ip", "cloudApp")),
        ("Mass download by a single user", "Exfiltration", "cloudAppSecurity",
         ("T1530",), ("user", "cloudApp")),
        ("Suspicious inbox forwarding", "Exfiltration", "cloudAppSecurity",
         ("T1114.003",), ("user", "mailbox", "cloudApp")),
    ),
    ENTRA_ID_PROTECTION: (
        ("Anonymous IP address", "InitialAccess", "azureAdIdentityProtection", ("T1078",),
         ("user", "ip")),
        ("Unfamiliar sign-in properties", "InitialAccess", "azureAdIdentityProtection",
         ("T1078.004",), ("user", "ip")),
        ("Leaked credentials", "CredentialAccess", "azureAdIdentityProtection", ("T1589.001",),
         ("user",)),
    ),
}
_PRODUCT_NAMES = {OFFICE: "Microsoft Defender for Office 365",
                  IDENTITY: "Microsoft Defender for Identity",
                  CLOUD_APPS: "Microsoft Defender for Cloud Apps",
                  ENTRA_ID_PROTECTION: "Microsoft Entra ID Protection"}
_PEOPLE = ("j.doe", "m.rossi", "a.okafor", "l.chen")
_V2_DETERMINATIONS = {"truePositive": ("multiStagedAttack", "malware", "phishing",
                                       "compromisedAccount", "maliciousUserActivity"),
                      "informationalExpectedActivity": ("securityTesting",
                                                        "confirmedUserActivity",
                                                        "lineOfBusinessApplication"),
                      "falsePositive": ("notMalicious", "notEnoughDataToValidate", "other")}


class GraphAlertFactory:
    """Makes v2 alerts of the products Graph serves beside Defender for Endpoint; seeded,
    so a run is the same each time."""

    def __init__(self, tenant_id: str, domain: str, seed: int = 0) -> None:
        self.tenant_id, self.domain = tenant_id, domain
        self.rng = random.Random(f"graph:{tenant_id}:{seed}")

    def _guid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _ip(self) -> str:
        return (f"{self.rng.choice((185, 45, 91, 203))}.{self.rng.randrange(256)}."
                f"{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}")

    def _evidence(self, kind: str, created: str, user: str) -> dict[str, Any]:
        name = user.split("@")[0]
        if kind == "user":
            return {"@odata.type": "#microsoft.graph.security.userEvidence",
                    **_evidence_base(created, ["compromised"]),
                    "userAccount": _account(name, self.domain.split(".")[0].upper(),
                                            f"S-1-5-21-{self.rng.randrange(10**9)}-1104",
                                            self._guid(), user), "stream": None}
        if kind == "ip":
            return {"@odata.type": "#microsoft.graph.security.ipEvidence",
                    **_evidence_base(created, ["attacker"]), "ipAddress": self._ip(),
                    "countryLetterCode": self.rng.choice(("NL", "RU", "BR", "VN"))}
        if kind == "url":
            return {"@odata.type": "#microsoft.graph.security.urlEvidence",
                    **_evidence_base(created, ["attacker"], "malicious"),
                    "url": f"https://login-{self.rng.randrange(16**6):06x}.example-bad.net/"
                           f"o365/{self.rng.randrange(16**8):08x}"}
        if kind == "mailbox":
            return {"@odata.type": "#microsoft.graph.security.mailboxEvidence",
                    **_evidence_base(created, ["destination"]), "primaryAddress": user,
                    "displayName": name,
                    "userAccount": _account(name, self.domain, None, self._guid(), user)}
        if kind == "message":
            sender = f"billing@{self.rng.choice(('invoices-portal.example', 'dhl-track.example'))}"
            return {"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                    **_evidence_base(created, [], "malicious"),
                    "networkMessageId": self._guid(),
                    "internetMessageId": f"<{self._guid()}@mail.example>",
                    "subject": self.rng.choice(("Invoice overdue", "Your parcel is waiting",
                                                "Password expires today")),
                    "p1Sender": {"emailAddress": sender, "displayName": "Billing",
                                 "domainName": sender.split("@")[1]},
                    "p2Sender": {"emailAddress": sender, "displayName": "Billing",
                                 "domainName": sender.split("@")[1]},
                    "recipientEmailAddress": user, "senderIp": self._ip(),
                    "receivedDateTime": created, "antiSpamDirection": "inbound",
                    "deliveryAction": "delivered", "deliveryLocation": "inbox",
                    "attachmentsCount": self.rng.randrange(0, 2), "urlCount": 1,
                    "language": "en", "threatDetectionMethods": ["urlDetonation"],
                    "threats": ["Phish"], "urls": []}
        if kind == "cloudApp":
            return {"@odata.type": "#microsoft.graph.security.cloudApplicationEvidence",
                    **_evidence_base(created, ["contextual"]), "appId": 11161,
                    "displayName": "Office 365", "instanceId": 0, "instanceName":
                    "Office 365", "saasAppId": 11161, "stream": None}
        host = f"dc-{self.rng.randrange(16**4):04x}.{self.domain}"
        return {"@odata.type": "#microsoft.graph.security.deviceEvidence",
                **_evidence_base(created, ["destination"]), "deviceDnsName": host,
                "mdeDeviceId": None, "azureAdDeviceId": self._guid(),
                "osPlatform": "WindowsServer2022", "healthStatus": "active",
                "onboardingStatus": "onboarded", "ipInterfaces": [], "loggedOnUsers": []}

    def make(self, product: str, created_ticks: int) -> dict[str, Any]:
        """One new alert of `product` (a serviceSource other than endpoint) at `created_ticks`."""
        title, category, source, mitre, kinds = self.rng.choice(PLAYBOOK[product])
        user = f"{self.rng.choice(_PEOPLE)}@{self.domain}"
        created = format_ticks(created_ticks)
        first = format_ticks(created_ticks - self.rng.randrange(5, 900) * TICKS_PER_SECOND)
        digest = hashlib.sha1(f"{product}{created_ticks}{self.rng.random()}".encode(),
                              usedforsecurity=False).hexdigest()
        prefix = {OFFICE: "fa", IDENTITY: "aa", CLOUD_APPS: "ca",
                  ENTRA_ID_PROTECTION: "ad"}[product]
        alert_id = f"{prefix}{digest[:32]}"
        return {
            "@odata.type": "#microsoft.graph.security.alert",
            "id": alert_id, "providerAlertId": digest[:24], "incidentId": None,
            "status": "new",
            "severity": self.rng.choices(SEVERITIES[1:5], (10, 30, 40, 20))[0],
            "classification": "unknown", "determination": "unknown",
            "serviceSource": product, "detectionSource": source,
            "productName": _PRODUCT_NAMES[product], "detectorId": self._guid(),
            "tenantId": self.tenant_id, "title": title,
            "description": f"{title}: activity by {user} matched a {category} pattern.",
            "recommendedActions": "Confirm the activity with the user; reset the account's "
                                  "credentials and revoke its sessions if it is not theirs.",
            "category": category, "assignedTo": None,
            "alertWebUrl": alert_url(alert_id, self.tenant_id), "incidentWebUrl": None,
            "actorDisplayName": None, "threatDisplayName": None, "threatFamilyName": None,
            "mitreTechniques": list(mitre), "createdDateTime": created,
            "lastUpdateDateTime": created, "resolvedDateTime": None,
            "firstActivityDateTime": first, "lastActivityDateTime": created,
            "comments": [], "systemTags": [], "alertPolicyId": None, "additionalData": {},
            "evidence": [self._evidence(k, created, user) for k in kinds],
        }

    def progress(self, alert: dict[str, Any], now_ticks: int) -> dict[str, Any]:
        """The next analyst step: new -> inProgress -> resolved (classified)."""
        changed, now = dict(alert), format_ticks(now_ticks)
        who = f"{self.rng.choice(('secops', 'alex.kim'))}@{self.domain}"
        if alert.get("status") == "new":
            changed.update(status="inProgress", assignedTo=who)
        elif alert.get("status") == "inProgress":
            classification = self.rng.choice(tuple(_V2_DETERMINATIONS))
            changed.update(status="resolved", classification=classification,
                           determination=self.rng.choice(_V2_DETERMINATIONS[classification]),
                           resolvedDateTime=now)
        else:
            return alert
        changed["comments"] = [*(alert.get("comments") or []),
                               {"comment": f"Moved to {changed['status']}",
                                "createdByDisplayName": who, "createdDateTime": now}]
        changed["lastUpdateDateTime"] = now
        return changed
