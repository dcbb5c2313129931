"""Whether a signed-in tenant may be registered through a given invitation.

Pure, so every rule is tested without I/O. The tenant is the `tid` of a validated ID
token; what the registry knows of it decides the rest. An open invitation brings in only
tenants new to the registry: a tenant the MSSP paused, offboarded, or lost comes back only
through a re-consent invitation made for it (or the MSSP's own resume). An active tenant
changes its access level (read-only to triage, or back) the same way.
"""

from __future__ import annotations

from enum import StrEnum

from shared.model import TenantStatus


class Decision(StrEnum):
    REGISTER = "register"  # new to the registry: verify, then add it
    REACTIVATE = "reactivate"  # known, and this invitation was made for it
    CHANGE_ACCESS = "change_access"  # active, and this invitation asks another access
    ALREADY_ACTIVE = "already_active"  # nothing to do: the invitation stays open
    HOME_TENANT = "home_tenant"  # the MSSP's own tenant is not a customer
    WRONG_TENANT = "wrong_tenant"  # the invitation names another tenant
    KNOWN_TENANT = "known_tenant"  # known but not active: needs a re-consent invitation


def decide(tenant_id: str, *, expected_tenant: str, reconsent_for: str,
           registered: TenantStatus | None, home_tenant: str, allow_home_tenant: bool,
           changes_access: bool = False) -> Decision:
    """`registered` is the tenant's status in the registry, None if it is not there.
    `expected_tenant` may be a domain; its resolution is checked by the caller.
    `changes_access`: the invitation asks another access level than the tenant has."""
    if home_tenant and tenant_id == home_tenant and not allow_home_tenant:
        return Decision.HOME_TENANT
    if reconsent_for and tenant_id != reconsent_for:
        return Decision.WRONG_TENANT
    if expected_tenant and "." not in expected_tenant and expected_tenant != tenant_id:
        return Decision.WRONG_TENANT
    if registered is None:
        return Decision.REGISTER
    if registered == TenantStatus.ACTIVE:
        if reconsent_for and changes_access:
            return Decision.CHANGE_ACCESS
        return Decision.ALREADY_ACTIVE
    if reconsent_for:
        return Decision.REACTIVATE
    return Decision.KNOWN_TENANT
