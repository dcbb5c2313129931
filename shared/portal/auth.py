"""Who is asking: App Service Authentication's principal, or locally the portal key; and
CSRF tokens bound to that principal for every form that changes something.

In Azure, App Service Authentication signs the user in and passes X-MS-CLIENT-PRINCIPAL
(base64 JSON with a `claims` list), stripping any copy a client sends; the portal only
checks that a group or app role in it is one the settings allow.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from shared.config import PortalSettings

PRINCIPAL_HEADER = "x-ms-client-principal"
KEY_HEADER = "x-portal-key"
SESSION_COOKIE = "mssp_portal"
GROUP_TYPES = {"groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"}
ROLE_TYPES = {"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
ID_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
NAME_TYPES = ("preferred_username", "name",
              "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
CSRF_SECONDS = 8 * 3600
MAX_HEADER = 64_000


@dataclass(frozen=True)
class Principal:
    id: str  # stable: CSRF tokens are bound to it
    name: str
    via: str  # "entra" or "key"
    groups: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()

    def may_act(self, settings: PortalSettings) -> bool:
        """Whether this principal may change alerts (not only look): anyone who entered,
        unless PORTAL_ACTION_GROUPS/ROLES name who may; the local key always may."""
        if self.via == "key" or not (settings.action_groups or settings.action_roles):
            return True
        return bool(self.groups & settings.action_groups or self.roles & settings.action_roles)


READ_ONLY_ANALYST = ("You are a read-only analyst here: acting on alerts is kept to the "
                     "groups or app roles PORTAL_ACTION_GROUPS / PORTAL_ACTION_ROLES name.")


class Denied(Exception):
    """401 (nobody signed in) or 403 (signed in, not allowed); the reason is shown."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _claims(header: str) -> tuple[list[dict[str, str]], str]:
    """The claims list and the role claim type, or Denied(401) if unreadable."""
    try:
        if len(header) > MAX_HEADER:
            raise ValueError("too long")
        body = json.loads(base64.b64decode(header + "=" * (-len(header) % 4)))
        claims = body["claims"]
        if not isinstance(claims, list):
            raise ValueError("claims is not a list")
        role_type = body.get("role_typ") or ""
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Denied(401, "The sign-in information could not be read.") from None
    good = [c for c in claims if isinstance(c, dict) and isinstance(c.get("typ"), str)
            and isinstance(c.get("val"), str)]
    return good, role_type if isinstance(role_type, str) else ""


def _first(claims: list[dict[str, str]], types: tuple[str, ...]) -> str:
    for wanted in types:
        for claim in claims:
            if claim["typ"] == wanted and claim["val"]:
                return claim["val"]
    return ""


def from_principal(settings: PortalSettings, header: str) -> Principal:
    claims, role_type = _claims(header)
    groups = {c["val"] for c in claims if c["typ"] in GROUP_TYPES}
    roles = {c["val"] for c in claims if c["typ"] in ROLE_TYPES or c["typ"] == role_type}
    name = _first(claims, NAME_TYPES) or "signed-in user"
    if not (groups & settings.allowed_groups or roles & settings.allowed_roles):
        raise Denied(403, f"{name} is signed in but is not in a group or app role that may "
                          "use this portal.")
    return Principal(id=_first(claims, ID_TYPES) or name, name=name, via="entra",
                     groups=frozenset(groups), roles=frozenset(roles))


def session_value(key: str) -> str:
    """What the session cookie holds: derived from the key, never the key itself."""
    return hmac.new(key.encode(), b"mssp-hub portal session", hashlib.sha256).hexdigest()


def key_matches(settings: PortalSettings, given: str) -> bool:
    return bool(settings.key) and hmac.compare_digest(given.encode(), settings.key.encode())


def cookies(headers: Mapping[str, str]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def authenticate(settings: PortalSettings, headers: Mapping[str, str]) -> Principal:
    """The principal of a request (headers with lower-case names), or Denied."""
    header = headers.get(PRINCIPAL_HEADER)
    if header:
        if not settings.principal_trusted:
            raise Denied(401, "App Service Authentication is not turned on for this app, so "
                              "sign-in information cannot be trusted.")
        return from_principal(settings, header)
    if settings.key:
        session = cookies(headers).get(SESSION_COOKIE, "")
        if (session and hmac.compare_digest(session, session_value(settings.key))) \
                or key_matches(settings, headers.get(KEY_HEADER, "")):
            return Principal(id="local-key", name="local portal key", via="key")
    raise Denied(401, "Sign in to use the portal.")


def csrf_key(settings: PortalSettings) -> bytes:
    """The portal's own key for CSRF tokens, derived from the consent-state secret so that
    no new secret is needed."""
    return hmac.new(settings.state_key, b"mssp-hub portal csrf", hashlib.sha256).digest()


def csrf_token(settings: PortalSettings, principal: Principal, now: float | None = None
               ) -> str:
    """expiry.nonce.signature, the signature over the principal: a token taken from one
    user's page is no good for another, and none can be made without the key."""
    expires = int((now or time.time()) + CSRF_SECONDS)
    nonce = secrets.token_urlsafe(12)
    return f"{expires}.{nonce}.{_sign(settings, principal, expires, nonce)}"


def _sign(settings: PortalSettings, principal: Principal, expires: int, nonce: str) -> str:
    message = f"{principal.via}|{principal.id}|{expires}|{nonce}".encode()
    return hmac.new(csrf_key(settings), message, hashlib.sha256).hexdigest()


def csrf_ok(settings: PortalSettings, principal: Principal, token: str,
            now: float | None = None) -> bool:
    try:
        expires_text, nonce, signature = token.split(".")
        expires = int(expires_text)
    except ValueError:
        return False
    if expires < (now or time.time()):
        return False
    return hmac.compare_digest(signature, _sign(settings, principal, expires, nonce))


def same_origin(headers: Mapping[str, str], own_origins: set[str]) -> bool:
    """Browsers say where a POST comes from; anything but our own pages is refused."""
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        return f"{parts.scheme}://{parts.netloc}".lower() in own_origins
    return True
