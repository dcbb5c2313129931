"""An alert's evidence as uniform rows, from Defender for Endpoint's flat items or Graph's
typed ones (`#microsoft.graph.security.fileEvidence` with `fileDetails`...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.alerts.spelling import ENTITY, EVIDENCE_KEYS
from shared.alerts.values import as_dict, as_list, kind, text, upper_first


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
        return cls(text(item.get("entityType")) or "", text(item.get("fileName")),
                   text(item.get("filePath")), text(item.get("sha1")),
                   text(item.get("sha256")), text(item.get("processCommandLine")),
                   text(item.get("ipAddress")), text(item.get("url")),
                   text(item.get("accountName")), text(item.get("domainName")),
                   text(item.get("userPrincipalName")), text(item.get("registryKey")),
                   text(item.get("registryValue")), text(item.get("detectionStatus")),
                   text(item.get("verdict")))

    @classmethod
    def of_graph(cls, item: Mapping[str, Any]) -> Evidence:
        typed = kind(item)
        entity = ENTITY.get(typed) or upper_first(typed.removesuffix("Evidence")) or ""
        file = as_dict(item.get("fileDetails")) or as_dict(item.get("imageFile"))
        account = as_dict(item.get("userAccount"))
        urls = as_list(item.get("urls"))
        return cls(
            entity_type=entity, file_name=text(file.get("fileName")),
            file_path=text(file.get("filePath")), sha1=text(file.get("sha1")),
            sha256=text(file.get("sha256")),
            command_line=text(item.get("processCommandLine")),
            ip=text(item.get("ipAddress")) or text(item.get("senderIp")),
            url=text(item.get("url")) or (text(urls[0]) if urls else None),
            account_name=text(account.get("accountName")),
            domain_name=text(account.get("domainName")),
            user_principal_name=text(account.get("userPrincipalName"))
            or text(item.get("primaryAddress")) or text(item.get("recipientEmailAddress")),
            registry_key=text(item.get("registryKey")),
            registry_value=text(item.get("registryValue")),
            detection_status=upper_first(item.get("detectionStatus")),
            verdict=upper_first(item.get("verdict")))
