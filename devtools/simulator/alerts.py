"""Realistic Defender for Endpoint alerts: every field of the entity, varied and plausible."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from devtools.simulator.clock import TICKS_PER_SECOND, format_ticks

SEVERITIES = ("Informational", "Low", "Medium", "High")
SEVERITY_WEIGHTS = (15, 35, 35, 15)
CLASSIFICATIONS = ("TruePositive", "InformationalExpectedActivity", "FalsePositive")
DETERMINATIONS = {
    "TruePositive": ("MultiStagedAttack", "MaliciousUserActivity", "CompromisedUser",
                     "Malware", "Phishing", "UnwantedSoftware"),
    "InformationalExpectedActivity": ("SecurityTesting", "LineOfBusinessApplication",
                                      "ConfirmedActivity"),
    "FalsePositive": ("NotMalicious", "InsufficientData", "Other"),
}
DEVICE_GROUPS = ("Finance Workstations", "Servers - Tier 0", "Developers", "Kiosks",
                 "UnassignedGroup")
ANALYSTS = ("secops@{domain}", "alex.kim@{domain}", "Automation")

# (title, category, detectionSource, MITRE techniques, threat family or None)
PLAYBOOK: tuple[tuple[str, str, str, tuple[str, ...], str | None], ...] = (
    ("Suspicious PowerShell command line", "Execution", "WindowsDefenderAtp",
     ("T1059.001", "T1027"), None),
    ("Ransomware behavior detected in the file system", "Ransomware", "WindowsDefenderAtp",
     ("T1486", "T1490"), "Ransom:Win32/LockBit"),
    ("'Mimikatz' credential theft tool", "CredentialAccess", "WindowsDefenderAv",
     ("T1003.001",), "HackTool:Win32/Mimikatz"),
    ("Suspicious connection to a known C2 server", "CommandAndControl", "CustomerTI",
     ("T1071.001", "T1573"), None),
    ("Possible lateral movement using PsExec", "LateralMovement", "WindowsDefenderAtp",
     ("T1021.002", "T1569.002"), None),
    ("An active 'Emotet' malware was detected", "Malware", "WindowsDefenderAv",
     ("T1204.002",), "Trojan:Win32/Emotet"),
    ("Suspicious scheduled task created", "Persistence", "WindowsDefenderAtp",
     ("T1053.005",), None),
    ("Phishing link clicked from email", "InitialAccess", "OfficeATP", ("T1566.002",), None),
    ("Unusual data transfer to cloud storage", "Exfiltration", "MCAS", ("T1567.002",), None),
    ("Suspicious LDAP query for domain admins", "Discovery", "AzureATP",
     ("T1087.002", "T1069.002"), None),
    ("Potentially unwanted application detected", "UnwantedSoftware",
     "WindowsDefenderSmartScreen", (), "PUA:Win32/Presenoker"),
    ("Custom detection: rare parent process for cmd.exe", "SuspiciousActivity",
     "CustomDetection", ("T1059.003",), None),
)


class AlertFactory:
    """Makes alerts for one tenant; seeded, so a demo is the same each time."""

    def __init__(self, tenant_id: str, domain: str, seed: int = 0) -> None:
        self.tenant_id, self.domain = tenant_id, domain
        self.rng = random.Random(f"{tenant_id}:{seed}")
        self.hosts = [f"{p}-{self.rng.randrange(16**5):05x}.{domain}"
                      for p in ("desktop", "laptop", "srv", "dc", "sql", "kiosk")
                      for _ in range(2)]

    def _hex(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def _sha(self, text: str, algo: str) -> str:
        return hashlib.new(algo, f"{text}{self.rng.random()}".encode()).hexdigest()

    def evidence(self, created: str, host: str, user: str, extra_bytes: int = 0
                 ) -> list[dict[str, Any]]:
        """A realistic evidence set; `extra_bytes` pads a command line to a chosen size."""
        cmd = ("powershell.exe -NoProfile -ExecutionPolicy Bypass -EncodedCommand "
               + self._hex(64))
        if extra_bytes:
            cmd += " " + self.rng.randbytes(extra_bytes // 2 + 1).hex()[:extra_bytes]
        base = {"evidenceCreationTime": created, "sha1": None, "sha256": None, "fileName": None,
                "filePath": None, "processId": None, "processCommandLine": None,
                "processCreationTime": None, "parentProcessId": None,
                "parentProcessCreationTime": None, "parentProcessFileName": None,
                "parentProcessFilePath": None, "ipAddress": None, "url": None,
                "registryKey": None, "registryHive": None, "registryValueType": None,
                "registryValue": None, "accountName": None, "domainName": None,
                "userSid": None, "aadUserId": None, "userPrincipalName": None,
                "detectionStatus": None}
        name = self.rng.choice(("invoice_0923.pdf.exe", "update.ps1", "svch0st.exe",
                                "Q3 payroll.xlsm"))
        pid = self.rng.randrange(1000, 30000)
        return [
            {**base, "entityType": "User", "accountName": user.split("@")[0],
             "domainName": self.domain.split(".")[0].upper(),
             "userSid": f"S-1-5-21-{self.rng.randrange(10**9)}-{self.rng.randrange(10**9)}-1104",
             "aadUserId": f"{self._hex(8)}-{self._hex(4)}-{self._hex(4)}-{self._hex(4)}-"
                          f"{self._hex(12)}", "userPrincipalName": user},
            {**base, "entityType": "Process", "fileName": "powershell.exe",
             "filePath": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0",
             "sha1": self._sha(cmd, "sha1"), "sha256": self._sha(cmd, "sha256"),
             "processId": pid, "processCommandLine": cmd, "processCreationTime": created,
             "parentProcessId": pid - 12, "parentProcessFileName": "explorer.exe",
             "parentProcessFilePath": "C:\\Windows", "parentProcessCreationTime": created,
             "detectionStatus": "Detected"},
            {**base, "entityType": "File", "fileName": name,
             "filePath": f"C:\\Users\\{user.split('@')[0]}\\Downloads",
             "sha1": self._sha(name, "sha1"), "sha256": self._sha(name, "sha256"),
             "detectionStatus": self.rng.choice(("Detected", "Blocked", "Prevented"))},
            {**base, "entityType": "Ip",
             "ipAddress": f"185.{self.rng.randrange(256)}.{self.rng.randrange(256)}."
                          f"{self.rng.randrange(1, 255)}"},
            {**base, "entityType": "Url",
             "url": f"https://cdn-{self._hex(6)}.example-bad.net/payload/{self._hex(8)}"},
            {**base, "entityType": "Registry",
             "registryKey": "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run",
             "registryHive": "HKEY_LOCAL_MACHINE", "registryValueType": "String",
             "registryValue": f"C:\\ProgramData\\{name}"},
        ][: self.rng.randrange(2, 7)]

    def make(self, created_ticks: int, updated_ticks: int | None = None,
             evidence_bytes: int = 0) -> dict[str, Any]:
        """One new alert raised at `created_ticks`."""
        title, category, source, mitre, family = self.rng.choice(PLAYBOOK)
        severity = self.rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]
        host = self.rng.choice(self.hosts)
        user = f"{self.rng.choice(('j.doe', 'm.rossi', 'a.okafor', 'svc_backup'))}@{self.domain}"
        created = format_ticks(created_ticks)
        first_event = format_ticks(created_ticks - self.rng.randrange(5, 600) * TICKS_PER_SECOND)
        alert_id = f"da{created_ticks:018d}_{self.rng.randrange(10**9, 10**10)}"
        evidence = self.evidence(created, host, user, evidence_bytes)
        if evidence_bytes and not any(e["processCommandLine"] for e in evidence):
            evidence.append(self.evidence(created, host, user, evidence_bytes)[1])
        return {
            "id": alert_id,
            "incidentId": self.rng.randrange(10_000, 999_999),
            "investigationId": self.rng.choice((None, self.rng.randrange(1, 99_999))),
            "assignedTo": None,
            "severity": severity,
            "status": "New",
            "classification": None,
            "determination": None,
            "investigationState": self.rng.choice(("Running", "PendingApproval", "Queued",
                                                   "UnsupportedAlertType", "Benign")),
            "detectionSource": source,
            "detectorId": f"{self._hex(8)}-{self._hex(4)}-{self._hex(4)}-{self._hex(4)}-"
                          f"{self._hex(12)}",
            "category": category,
            "threatFamilyName": family.split("/")[-1] if family else None,
            "threatName": family,
            "title": title,
            "description": f"{title} on {host.split('.')[0]}. A process launched by "
                           f"{user} exhibited behavior associated with {category}.",
            "alertCreationTime": created,
            "firstEventTime": first_event,
            "lastEventTime": created,
            "lastUpdateTime": format_ticks(updated_ticks or created_ticks),
            "resolvedTime": None,
            "machineId": self._hex(40),
            "computerDnsName": host,
            "rbacGroupName": self.rng.choice(DEVICE_GROUPS),
            "aadTenantId": self.tenant_id,
            "mitreTechniques": list(mitre),
            "relatedUser": {"userName": user.split("@")[0],
                            "domainName": self.domain.split(".")[0].upper()},
            "comments": [],
            "evidence": evidence,
        }

    def progress(self, alert: dict[str, Any], now_ticks: int) -> dict[str, Any]:
        """The next step an analyst takes: New -> InProgress -> Resolved (classified)."""
        changed = dict(alert)
        who = self.rng.choice(ANALYSTS).format(domain=self.domain)
        if alert.get("status") == "New":
            changed.update(status="InProgress", assignedTo=who)
        elif alert.get("status") == "InProgress":
            classification = self.rng.choice(CLASSIFICATIONS)
            changed.update(status="Resolved", classification=classification,
                           determination=self.rng.choice(DETERMINATIONS[classification]),
                           resolvedTime=format_ticks(now_ticks))
        else:
            return alert
        changed["comments"] = [*alert.get("comments", []),
                               {"comment": f"Moved to {changed['status']}", "createdBy": who,
                                "createdTime": format_ticks(now_ticks)}]
        changed["lastUpdateTime"] = format_ticks(now_ticks)
        return changed
