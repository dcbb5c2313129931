"""Plain data the product passes around: tenants, their status, cursors (queue messages,
alert events among them, are in `shared.messages`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

SEVERITIES = ("Informational", "Low", "Medium", "High")  # Defender's, lowest first
SOURCES = ("mde", "graph")  # where a tenant's alerts are fetched from (Tenant.source)


class TenantStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"  # by the MSSP
    CONSENT_REVOKED = "consent_revoked"  # the customer removed the app, or never consented
    UNAVAILABLE = "unavailable"  # tenant gone, no Defender, or the permission is missing
    OFFBOARDED = "offboarded"


def parse_tenant_id(value: str) -> str:
    """A tenant id as Entra writes it (lower-case GUID); ValueError otherwise."""
    try:
        parsed = uuid.UUID(str(value).strip())
    except ValueError:
        raise ValueError("tenant id must be a GUID") from None
    return str(parsed)


@dataclass
class Tenant:
    """One customer tenant in the registry, with the health the portal shows."""

    tenant_id: str
    display_name: str
    status: TenantStatus = TenantStatus.ACTIVE
    status_reason: str = ""
    status_changed_at: datetime | None = None
    region: str = ""  # "" (global) or us, eu, uk, au, swa
    created_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str = ""
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    fetch_queued_at: datetime | None = None
    fetch_cleared_at: datetime | None = None  # a worker (or admin) cleared the above
    throttled_until: datetime | None = None
    access: str = "read"  # "read" or "triage": what the tenant granted (token's roles)
    access_reason: str = ""  # why triage is not possible, when it is not
    # the app registration the tenant consented to, "read" (MSSP_CLIENT_ID) or "triage"
    # (MSSP_TRIAGE_CLIENT_ID): the worker's tokens come from it. Not `access`: a triage
    # app granted read roles only, or a 403 on a write, makes access "read" while the
    # tenant still trusts only the triage app.
    consent_app: str = "read"
    # where the tenant's alerts come from: "mde" (Defender for Endpoint's /api/alerts) or
    # "graph" (Microsoft Graph's security/alerts_v2, every Defender XDR product)
    source: str = "mde"
    etag: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tenant_id = parse_tenant_id(self.tenant_id)
        self.status = TenantStatus(self.status)


@dataclass(frozen=True)
class Cursor:
    """Where a tenant's fetch stands: every alert updated before `watermark` is stored,
    and `skip` of those updated exactly at it."""

    watermark: str  # Defender's own timestamp text, up to 7 fractional digits
    skip: int = 0
    # a graph tenant's cursor (docs/ingest.md, "Graph fetch"): "graph", the nextLink of
    # the page a chain is at ("" at rest), the latest version the chain has met, and when
    # the chain started; an mde cursor leaves them empty
    source: str = ""
    link: str = ""
    high: str = ""
    started: str = ""
