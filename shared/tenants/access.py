"""Read-only or triage: what a customer is asked to grant, and what it did grant.

Admin consent to application permissions grants everything the app registration declares
(`<resource>/.default`); the admin cannot pick a subset. So the two levels are two apps:
the main one asks for Alert.Read.All, the optional triage app for Alert.ReadWrite.All
(which includes reading). What was granted is read from the `roles` of the access token
the app gets for the tenant after consent, never assumed from what was asked.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from shared.config import IdentitySettings

READ, TRIAGE = "read", "triage"
ACCESS_LEVELS = (READ, TRIAGE)
READ_ROLE, TRIAGE_ROLE = "Alert.Read.All", "Alert.ReadWrite.All"
# a `graph` tenant's: Microsoft Graph's security API (alerts_v2 and incidents)
GRAPH_READ_ROLES = ("SecurityAlert.Read.All", "SecurityIncident.Read.All")
GRAPH_TRIAGE_ROLES = ("SecurityAlert.ReadWrite.All", "SecurityIncident.ReadWrite.All")
NO_TRIAGE_APP = ("triage access needs the MSSP's triage app, and none is configured "
                 "(MSSP_TRIAGE_CLIENT_ID)")


@dataclass(frozen=True)
class Permission:
    """The Defender permission an invitation asks for, as the consent page names it."""

    access: str
    role: str
    meaning: str


PERMISSIONS = {
    READ: Permission(READ, READ_ROLE, "read alerts"),
    TRIAGE: Permission(TRIAGE, TRIAGE_ROLE, "read alerts and update their status, "
                       "assignment, classification and comments"),
}


GRAPH_PERMISSIONS = {
    READ: Permission(READ, " and ".join(GRAPH_READ_ROLES), "read alerts and incidents"),
    TRIAGE: Permission(TRIAGE, " and ".join(GRAPH_TRIAGE_ROLES),
                       "read alerts and incidents and update their status, assignment, "
                       "classification and comments"),
}


def permissions(source: str) -> dict[str, Permission]:
    """The permissions a tenant of `source` ("mde" or "graph") is asked for, by access."""
    return GRAPH_PERMISSIONS if source == "graph" else PERMISSIONS


@dataclass(frozen=True)
class Granted:
    """What a tenant's consent gave: the access level, why not triage, and the app."""

    access: str
    reason: str
    app: str


def why_not_triage(identity: IdentitySettings) -> str:
    """Why triage invitations cannot be made ("" when they can)."""
    return "" if identity.triage_enabled else NO_TRIAGE_APP


def token_roles(access_token: str) -> list[str]:
    """The `roles` claim of an access token that came to us over TLS from Entra's token
    endpoint. Its signature is not checked: it is Defender's to check (the token is for
    Defender's audience, signed for it); we only read what Entra says it granted, and a
    wrong reading costs at most a write that Defender refuses with 403."""
    try:
        payload = access_token.split(".")[1]
        claims: Any = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return []
    roles = claims.get("roles") if isinstance(claims, dict) else None
    return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []


def granted(asked: str, roles: list[str], source: str = "mde") -> Granted:
    """The tenant's access from the roles its token carries, consenting to the app of
    `asked`. Triage only through the triage app, and only with Alert.ReadWrite.All (the
    docs also spell it Alert.Readwrite.All: compared without case), so triage access
    always means the triage app's tokens. A `graph` tenant's roles are those of its
    Graph token: triage needs SecurityAlert.ReadWrite.All (alerts; incidents' own
    role is asked for too, but alerts are what the hub updates)."""
    graph = source == "graph"
    if asked == READ:
        names = ", ".join(GRAPH_READ_ROLES) if graph else READ_ROLE
        return Granted(READ, f"consented to read-only access ({names})", READ)
    needed = GRAPH_TRIAGE_ROLES[0] if graph else TRIAGE_ROLE
    if needed.casefold() in {r.casefold() for r in roles}:
        return Granted(TRIAGE, "", TRIAGE)
    names = ", ".join(sorted(roles)) or ("no Graph security roles" if graph
                                         else "no Defender roles")
    return Granted(READ, f"the triage app was granted {names}, not {needed}: the "
                   "customer's admin can grant it and accept a new re-consent link", TRIAGE)
