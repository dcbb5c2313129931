"""Alert documents as the two APIs return them, for the view's and the consumers' tests:
a Defender for Endpoint alert and its Graph alerts_v2 twin (the same alert read through
Graph: same id, values in Graph's spelling), and Graph alerts of other products, shaped
after Microsoft's documented examples (List alerts_v2, alert and evidence resources)."""

from __future__ import annotations

import copy
from typing import Any

TENANT = "b3c1b5fc-828c-45fa-a1e1-10d74f6d6e9c"
ALERT_ID = "da637551227677560813_-961444813"
HOSTILE = ("<script>alert('x')</script> | a=b \\ \r\nBcc: evil@example.com {{ 7*7 }} "
           "\u202eexe.txt\x00")
PROC_SHA1 = "ad1f8a7f3aa7b4cdb3d2df3b7f6b59c0d3f5a0e5"
FILE_SHA1 = "5f1e0c6e6b5e8f2d4a3c9b7e1d0f2a4c6e8b0d2f"
PROC_SHA256 = "4d0b8e1f1f6c3a0d8d2c4d1e0e2e9d4b8a6c2a3b7b1f6e5d9c8b7a6f5e4d3c2b"
FILE_SHA256 = "8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b"


def mde_alert(**changes: Any) -> dict[str, Any]:
    """A Defender for Endpoint `/api/alerts` alert (with `$expand=evidence`)."""
    alert = {
        "id": ALERT_ID, "incidentId": 28282, "investigationId": None,
        "assignedTo": "secop2@contoso.com", "severity": "Low", "status": "New",
        "classification": "TruePositive", "determination": "Malware",
        "investigationState": "Queued", "detectionSource": "WindowsDefenderAv",
        "detectorId": "e0da400f-affd-43ef-b1d5-afc2eb6f2756", "category": "DefenseEvasion",
        "threatFamilyName": None, "threatName": None,
        "title": "Suspicious execution of hidden file",
        "description": "A hidden file has been launched. This activity could indicate a "
                       "compromised host.",
        "recommendedAction": "Collect artifacts and determine scope",
        "alertCreationTime": "2021-04-16T12:05:07.4130523Z",
        "firstEventTime": "2021-04-16T12:04:23.6166672Z",
        "lastEventTime": "2021-04-16T12:04:23.6166672Z",
        "lastUpdateTime": "2021-05-13T12:25:17.3933333Z", "resolvedTime": None,
        "machineId": "505d70d89cfa3428f7aac7d2eb3a64c60fd3d843",
        "computerDnsName": "tempmachine1", "rbacGroupName": "UnassignedGroup",
        "aadTenantId": TENANT, "mitreTechniques": ["T1564.001"],
        "relatedUser": {"userName": "administrator", "domainName": "tempmachine1"},
        "comments": [{"comment": "looking", "createdBy": "secop@contoso.com",
                      "createdTime": "2021-04-16T12:10:00Z"}],
        "evidence": [
            {"entityType": "User", "accountName": "administrator",
             "domainName": "tempmachine1", "userPrincipalName": "administrator@contoso.com"},
            {"entityType": "Process", "fileName": "wscript.exe",
             "filePath": "C:\\Windows\\System32", "sha1": PROC_SHA1,
             "sha256": PROC_SHA256,
             "processCommandLine": "wscript.exe //B hidden.vbs", "detectionStatus": "Detected"},
            {"entityType": "File", "fileName": "hidden.vbs", "filePath": "C:\\Users\\Public",
             "sha1": FILE_SHA1,
             "sha256": FILE_SHA256,
             "detectionStatus": "Detected"},
            {"entityType": "Ip", "ipAddress": "203.0.113.7"},
            {"entityType": "Url", "url": "http://malicious.example/payload"},
        ],
    }
    alert.update(changes)
    return alert


def graph_alert(**changes: Any) -> dict[str, Any]:
    """The same alert as Graph's `/security/alerts_v2` returns it (the twin of
    `mde_alert()`)."""
    alert = {
        "@odata.type": "#microsoft.graph.security.alert",
        "id": ALERT_ID, "providerAlertId": ALERT_ID, "incidentId": "28282",
        "status": "new", "severity": "low", "classification": "truePositive",
        "determination": "malware", "serviceSource": "microsoftDefenderForEndpoint",
        "detectionSource": "antivirus", "detectorId": "e0da400f-affd-43ef-b1d5-afc2eb6f2756",
        "tenantId": TENANT, "title": "Suspicious execution of hidden file",
        "description": "A hidden file has been launched. This activity could indicate a "
                       "compromised host.",
        "recommendedActions": "Collect artifacts and determine scope",
        "category": "DefenseEvasion", "assignedTo": "secop2@contoso.com",
        "alertWebUrl": f"https://security.microsoft.com/alerts/{ALERT_ID}?tid={TENANT}",
        "incidentWebUrl": f"https://security.microsoft.com/incidents/28282?tid={TENANT}",
        "actorDisplayName": None, "threatDisplayName": None, "threatFamilyName": None,
        "mitreTechniques": ["T1564.001"],
        "createdDateTime": "2021-04-16T12:05:07.4130523Z",
        "lastUpdateDateTime": "2021-05-13T12:25:17.3933333Z", "resolvedDateTime": None,
        "firstActivityDateTime": "2021-04-16T12:04:23.6166672Z",
        "lastActivityDateTime": "2021-04-16T12:04:23.6166672Z",
        "investigationState": "Queued",
        "comments": [{"comment": "looking", "createdByDisplayName": "secop@contoso.com",
                      "createdDateTime": "2021-04-16T12:10:00Z"}],
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.deviceEvidence",
             "createdDateTime": "2021-04-16T12:05:07Z", "verdict": "unknown",
             "remediationStatus": "none", "roles": [], "deviceDnsName": "tempmachine1",
             "mdeDeviceId": "505d70d89cfa3428f7aac7d2eb3a64c60fd3d843",
             "rbacGroupName": "UnassignedGroup", "osPlatform": "Windows10"},
            {"@odata.type": "#microsoft.graph.security.userEvidence",
             "verdict": "unknown", "remediationStatus": "none", "roles": [],
             "userAccount": {"accountName": "administrator", "domainName": "tempmachine1",
                             "userSid": "S-1-5-21-1-500",
                             "userPrincipalName": "administrator@contoso.com"}},
            {"@odata.type": "#microsoft.graph.security.processEvidence",
             "verdict": "suspicious", "remediationStatus": "none", "roles": [],
             "processCommandLine": "wscript.exe //B hidden.vbs", "processId": 4780,
             "detectionStatus": "detected",
             "imageFile": {"fileName": "wscript.exe", "filePath": "C:\\Windows\\System32",
                           "sha1": PROC_SHA1,
                           "sha256": PROC_SHA256}},
            {"@odata.type": "#microsoft.graph.security.fileEvidence",
             "verdict": "malicious", "remediationStatus": "none", "roles": [],
             "detectionStatus": "detected",
             "fileDetails": {"fileName": "hidden.vbs", "filePath": "C:\\Users\\Public",
                             "sha1": FILE_SHA1,
                             "sha256": FILE_SHA256}},
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "verdict": "unknown",
             "remediationStatus": "none", "roles": [], "ipAddress": "203.0.113.7"},
            {"@odata.type": "#microsoft.graph.security.urlEvidence", "verdict": "unknown",
             "remediationStatus": "none", "roles": [], "url": "http://malicious.example/payload"},
        ],
    }
    alert.update(changes)
    return alert


def office_alert() -> dict[str, Any]:
    """Defender for Office 365: a phishing email (analyzed message, mailbox, URL)."""
    return {
        "id": "fa2e3b5c9a-1d2e-4f3a-8b7c-6d5e4f3a2b1c", "providerAlertId": "2e3b5c9a",
        "incidentId": "31337", "status": "inProgress", "severity": "medium",
        "classification": "unknown", "determination": "unknown",
        "serviceSource": "microsoftDefenderForOffice365",
        "detectionSource": "microsoftDefenderForOffice365",
        "tenantId": TENANT, "title": "Email messages containing malicious URL removed after "
                                     "delivery", "category": "InitialAccess",
        "createdDateTime": "2026-11-30T08:00:00Z", "lastUpdateDateTime": "2026-11-30T08:05:00Z",
        "firstActivityDateTime": "2026-11-30T07:58:00Z",
        "lastActivityDateTime": "2026-11-30T07:59:00Z", "mitreTechniques": ["T1566.002"],
        "alertWebUrl": "https://security.microsoft.com/alerts/fa2e3b5c9a?tid=" + TENANT,
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
             "verdict": "malicious", "remediationStatus": "remediated", "roles": [],
             "senderIp": "198.51.100.23", "subject": "Invoice overdue",
             "recipientEmailAddress": "pat@contoso.com",
             "urls": ["https://phish.example/login"],
             "p1Sender": {"emailAddress": "billing@fabrikam.example"}},
            {"@odata.type": "#microsoft.graph.security.mailboxEvidence", "verdict": "unknown",
             "remediationStatus": "none", "roles": ["destination"],
             "primaryAddress": "pat@contoso.com", "displayName": "Pat"},
            {"@odata.type": "#microsoft.graph.security.urlEvidence", "verdict": "malicious",
             "remediationStatus": "none", "roles": [], "url": "https://phish.example/login"},
        ],
    }


def identity_alert() -> dict[str, Any]:
    """Defender for Identity: a reconnaissance alert about a user, from an IP."""
    return {
        "id": "aa2e3b5c9b", "providerAlertId": "2e3b5c9b", "incidentId": "31338",
        "status": "resolved", "severity": "high", "classification": "falsePositive",
        "determination": "notMalicious", "serviceSource": "microsoftDefenderForIdentity",
        "detectionSource": "microsoftDefenderForIdentity", "tenantId": TENANT,
        "title": "User and IP address reconnaissance (SMB)", "category": "Discovery",
        "createdDateTime": "2026-11-30T09:00:00Z", "lastUpdateDateTime": "2026-11-30T09:30:00Z",
        "resolvedDateTime": "2026-11-30T09:30:00Z",
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.userEvidence", "verdict": "suspicious",
             "userAccount": {"accountName": "jdoe", "domainName": "CONTOSO",
                             "userPrincipalName": "jdoe@contoso.com"}},
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "verdict": "unknown",
             "ipAddress": "10.0.0.8"},
            {"@odata.type": "#microsoft.graph.security.deviceEvidence",
             "deviceDnsName": "dc01.contoso.local", "mdeDeviceId": None},
        ],
    }


def entra_alert() -> dict[str, Any]:
    """Entra ID Protection: a risky sign-in (a value Graph may add: passed through)."""
    return {
        "id": "ad_0123456789", "providerAlertId": "0123456789", "incidentId": "31339",
        "status": "new", "severity": "medium", "classification": None,
        "determination": None, "serviceSource": "microsoftEntraIdProtection",
        "detectionSource": "azureAdIdentityProtection", "tenantId": TENANT,
        "title": "Atypical travel", "category": "InitialAccess",
        "createdDateTime": "2026-11-30T10:00:00Z", "lastUpdateDateTime": "2026-11-30T10:00:00Z",
        "evidence": [
            {"@odata.type": "#microsoft.graph.security.userEvidence",
             "userAccount": {"accountName": "kim", "userPrincipalName": "kim@contoso.com"}},
            {"@odata.type": "#microsoft.graph.security.ipEvidence", "ipAddress": "192.0.2.4"},
        ],
    }


def twins() -> tuple[dict[str, Any], dict[str, Any]]:
    return mde_alert(), graph_alert()


def hostile(document: dict[str, Any], schema: str) -> dict[str, Any]:
    """Hostile text in every field an output shows."""
    doc = copy.deepcopy(document)
    for key in ("title", "description", "category", "assignedTo"):
        doc[key] = HOSTILE
    if schema == "mde":
        doc["computerDnsName"] = doc["rbacGroupName"] = HOSTILE
        doc["evidence"][1]["processCommandLine"] = HOSTILE
    else:
        doc["evidence"][0]["deviceDnsName"] = doc["evidence"][0]["rbacGroupName"] = HOSTILE
        doc["evidence"][2]["processCommandLine"] = HOSTILE
    return doc
