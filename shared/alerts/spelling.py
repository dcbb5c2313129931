"""The hub's canonical spelling of an alert's values (Defender for Endpoint's) and Graph
alerts_v2's, mapped: enums, detection sources, evidence types, products' names."""

from __future__ import annotations

MDE_SOURCE = "microsoftDefenderForEndpoint"  # Graph's serviceSource of an endpoint alert

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
# Graph's detectionSource -> Defender for Endpoint's API value, where Defender names it.
# Graph's members: https://learn.microsoft.com/graph/api/resources/security-detectionsource
# Defender's values: the "Detection source | API value" table of the alerts queue,
# https://learn.microsoft.com/defender-endpoint/alerts-queue (EDR is WindowsDefenderAtp, as
# in the alert resource's example, https://learn.microsoft.com/defender-endpoint/api/alerts;
# Microsoft Threat Experts / Defender Experts is ThreatExperts; Defender XDR is MTP); AzureATP
# (Defender for Identity) and MCAS (Cloud App Security): the DetectionSource values before
# the January 2021 renaming, https://learn.microsoft.com/defender-xdr/advanced-hunting-schema-changes.
# Every other member (unknown, manual, azureAdIdentityProtection, microsoftDataLossPrevention,
# appGovernance*, Defender for Cloud's, Sentinel's...) has no Defender for Endpoint name
# and passes through as Graph spells it.
DETECTION_SOURCE = {
    "microsoftDefenderForEndpoint": "WindowsDefenderAtp", "antivirus": "WindowsDefenderAv",
    "smartScreen": "WindowsDefenderSmartScreen", "customTi": "CustomerTI",
    "customDetection": "CustomDetection", "automatedInvestigation": "AutomatedInvestigation",
    "microsoftThreatExperts": "ThreatExperts", "microsoft365Defender": "MTP",
    "microsoftDefenderForOffice365": "OfficeATP", "microsoftDefenderForIdentity": "AzureATP",
    "cloudAppSecurity": "MCAS"}
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


def product_name(service_source: str | None) -> str:
    """The display name of a Graph serviceSource (an unknown one as it is)."""
    if not service_source:
        return PRODUCTS[MDE_SOURCE]
    return PRODUCTS.get(service_source, service_source)


def short_product(name: str) -> str:
    """The product without the vendor ("Defender for Endpoint"): CEF and ECS name the
    vendor in a field of its own."""
    return name.removeprefix("Microsoft ").strip() or name
