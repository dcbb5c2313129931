"""The body of a new invitation (the admin API and the portal's form), as one model."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from shared import validation
from shared.validation import Address, Name, Strict

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


def parse_reconsent(body: Any) -> dict[str, Any]:
    """A re-consent invitation's values (no body: the defaults), or a ValidationError."""
    values = validation.check(Reconsent, body).model_dump()
    return {**values, "contact_email": values["contact_email"] or ""}
