"""An invitation to connect a tenant, and the body of a new one (the admin API and the
portal's form), as one model."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from shared import validation
from shared.validation import Address, Name, Reply, Strict, Timestamp

Access = Literal["read", "triage"]
Source = Literal["mde", "graph"]
SOURCE_HELP = ("where the tenant's alerts are fetched from: mde (Defender for Endpoint's "
               "API, Alert.Read.All) or graph (Microsoft Graph's security alerts_v2, every "
               "Defender XDR product: SecurityAlert.Read.All and SecurityIncident.Read.All); "
               "absent: DEFAULT_ALERT_SOURCE")
ACCESS_HELP = ("read: the main app, Alert.Read.All (read alerts); triage: the triage app, "
               "Alert.ReadWrite.All (also update status, assignment, classification and "
               "comments), only when MSSP_TRIAGE_CLIENT_ID is set")


@dataclass
class Invitation:
    id: str
    display_name: str
    contact_email: str
    expires_at: datetime
    expected_tenant: str = ""
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: str = "open"  # open | used | revoked
    tenant_id: str = ""
    used_at: datetime | None = None
    reconsent_for: str = ""  # a re-consent invitation: only this registered tenant
    access: str = "read"  # read | triage: which app (and permission) the consent is for
    source: str = "mde"  # mde | graph: the API the tenant is fetched from once connected
    # set just before the tenant is registered: a retry after a crash finishes the job
    admitting: str = ""
    notice_key: str = ""

    def usable(self, now: datetime) -> bool:
        return self.status == "open" and self.expires_at > now

    def public(self, link: str) -> dict[str, Any]:
        """The admin API's JSON of the invitation."""
        return InvitationView.of(self, link).model_dump(mode="json")


class InvitationView(Reply):
    """An invitation as the admin API shows it, with the link to send."""

    model_config = ConfigDict(title="Invitation")

    id: str
    display_name: str
    contact_email: str
    expected_tenant: str
    created_at: Timestamp
    expires_at: Timestamp
    status: Literal["open", "used", "revoked"]
    tenant_id: str | None
    reconsent_for: str | None = Field(description="the tenant a re-consent invitation is for")
    access: Access = Field(description=ACCESS_HELP)
    source: Source = Field(description=SOURCE_HELP)
    link: str

    @classmethod
    def of(cls, invitation: Invitation, link: str) -> InvitationView:
        return cls(id=invitation.id, display_name=invitation.display_name,
                   contact_email=invitation.contact_email,
                   expected_tenant=invitation.expected_tenant,
                   created_at=invitation.created_at, expires_at=invitation.expires_at,
                   status=invitation.status,  # type: ignore[arg-type]
                   tenant_id=invitation.tenant_id or None,
                   reconsent_for=invitation.reconsent_for or None,
                   access=invitation.access,  # type: ignore[arg-type]
                   source=invitation.source,  # type: ignore[arg-type]
                   link=link)


_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _tenant_or_domain(value: str) -> str:
    value = value.strip().lower()
    if not value:
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        if not _DOMAIN.match(value):
            raise ValueError("must be a tenant id (GUID) or a domain") from None
    return value


class NewInvitation(Strict):
    """POST /api/invitations: who is invited, and which tenant may answer."""

    display_name: Name
    contact_email: Address
    expected_tenant: Annotated[str, StringConstraints(max_length=253),
                               AfterValidator(_tenant_or_domain)] = Field(
        default="", description="a tenant id (GUID) or a verified domain; empty: any")
    expires_in_days: Annotated[int, Field(ge=1, le=90)] = 7
    access: Access = Field(default="read", description=ACCESS_HELP)
    source: Source | None = Field(default=None, description=SOURCE_HELP)


def parse_invitation(body: Any) -> dict[str, Any]:
    """A new invitation's values from decoded JSON (or a form's fields), or a
    ValidationError naming each bad field."""
    if isinstance(body, dict) and body.get("expected_tenant") is None:
        body = {k: v for k, v in body.items() if k != "expected_tenant"}  # null: any
    return validation.check(NewInvitation, body).model_dump()


class Reconsent(Strict):
    """POST /api/tenants/{id}/invitations (optional body): a re-consent invitation for a
    known tenant; the contact defaults to the tenant's own."""

    contact_email: Address | None = None
    expires_in_days: Annotated[int, Field(ge=1, le=90)] = 7
    access: Access = Field(default="read", description=ACCESS_HELP + "; another level than "
                           "an active tenant's own upgrades or downgrades it")
    source: Source | None = Field(default=None, description=SOURCE_HELP + "; graph for an "
                                  "active mde tenant moves it to Graph once consented")


def parse_reconsent(body: Any) -> dict[str, Any]:
    """A re-consent invitation's values (no body: the defaults), or a ValidationError."""
    values = validation.check(Reconsent, body).model_dump()
    return {**values, "contact_email": values["contact_email"] or ""}
