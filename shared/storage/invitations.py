"""Onboarding's tables: Invitations (one partition, a row per invitation) and
ConsentStates (a row per sign-in attempt, under its invitation's id: single use)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.tenants.invitations import Invitation

PARTITION = "inv"
_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")  # what create() makes; anything else is none
_STORED = ("display_name", "contact_email", "expected_tenant", "created_at", "expires_at",
           "status", "tenant_id", "used_at", "reconsent_for", "access", "source")
# rows from before these columns
_OPTIONAL = {"reconsent_for": "", "access": "read", "source": "mde"}


def _from_entity(row: Any) -> Invitation:
    return Invitation(id=row["RowKey"], admitting=row.get("admitting") or "",
                      notice_key=row.get("notice_key") or "",
                      **{k: row.get(k) for k in _STORED if k not in _OPTIONAL},
                      **{k: row.get(k) or default for k, default in _OPTIONAL.items()})


class InvitationRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def create(self, invitation: Invitation) -> None:
        self.client.create_entity({"PartitionKey": PARTITION, "RowKey": invitation.id,
                                   **{k: getattr(invitation, k) for k in _STORED}})

    def get(self, invitation_id: str) -> Invitation | None:
        if not _ID.match(invitation_id or ""):
            return None
        try:
            return _from_entity(self.client.get_entity(PARTITION, invitation_id))
        except ResourceNotFoundError:
            return None

    def all(self) -> list[Invitation]:
        """Every invitation, newest first."""
        rows = self.client.query_entities("PartitionKey eq @pk", parameters={"pk": PARTITION})
        found = (_from_entity(r) for r in rows if _ID.match(r["RowKey"]))
        return sorted(found, key=lambda i: i.created_at, reverse=True)

    def revoke(self, invitation_id: str) -> Invitation | None:
        """Revoke an open invitation (a used or revoked one stays as it is)."""
        invitation = self.get(invitation_id)
        if invitation is not None and invitation.status == "open":
            self._merge(invitation, status="revoked")
        return invitation

    def begin_admission(self, invitation: Invitation, tenant_id: str, notice_key: str
                        ) -> None:
        """Written just before the tenant is registered: the tenant it admits and the key
        of its notice, so that a retry after a crash finishes the same job."""
        self._merge(invitation, admitting=tenant_id, notice_key=notice_key)

    def abandon_admission(self, invitation: Invitation) -> None:
        """The tenant was registered by someone else meanwhile: nothing to finish."""
        self._merge(invitation, admitting="", notice_key="")

    def mark_used(self, invitation: Invitation, tenant_id: str) -> None:
        self._merge(invitation, status="used", tenant_id=tenant_id, used_at=datetime.now(UTC))

    def _merge(self, invitation: Invitation, **values: Any) -> None:
        """Write the changed fields, and change the caller's copy to match."""
        self.client.update_entity({"PartitionKey": PARTITION, "RowKey": invitation.id,
                                   **values}, mode=UpdateMode.MERGE)
        for name, value in values.items():
            setattr(invitation, name, value)


@dataclass
class ConsentAttempt:
    """One sign-in attempt through an invitation: its PKCE verifier and the digest of its
    nonce stay here, never in a URL; used once."""

    invitation_id: str
    attempt: str
    expires_at: datetime
    code_verifier: str
    nonce_digest: str
    used: bool = False
    etag: str | None = None


class ConsentStateRepository:
    def __init__(self, client: TableClient) -> None:
        self.client = client

    def record(self, attempt: ConsentAttempt) -> None:
        self.client.create_entity({"PartitionKey": attempt.invitation_id,
                                   "RowKey": attempt.attempt, "ExpiresAt": attempt.expires_at,
                                   "Used": attempt.used, "CodeVerifier": attempt.code_verifier,
                                   "NonceDigest": attempt.nonce_digest})

    def get(self, invitation_id: str, attempt: str) -> ConsentAttempt | None:
        try:
            row = self.client.get_entity(invitation_id, attempt)
        except ResourceNotFoundError:
            return None
        return ConsentAttempt(invitation_id, attempt, row["ExpiresAt"], row["CodeVerifier"],
                              row["NonceDigest"], bool(row["Used"]), row.metadata["etag"])

    def consume(self, attempt: ConsentAttempt) -> bool:
        """Mark the attempt used, exactly once: False if it changed since it was read (a
        racing replay used it first)."""
        try:
            self.client.update_entity({"PartitionKey": attempt.invitation_id,
                                       "RowKey": attempt.attempt, "Used": True,
                                       "UsedAt": datetime.now(UTC)},
                                      mode=UpdateMode.MERGE, etag=attempt.etag,
                                      match_condition=MatchConditions.IfNotModified)
        except HttpResponseError:
            return False
        attempt.used = True
        return True
