"""Graph's `@odata.nextLink`: an opaque `$skiptoken` that carries the query, where the
last page ended, and when the link stops working.

The token is signed, not stored: the simulator keeps nothing per listing, and a
restarted simulator (a new key) answers its old links as expired, as a service that
forgot them would. The client can only follow it: any change is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass


class Expired(ValueError):
    """The link's time is over, or it was signed by a simulator that no longer runs."""


class Invalid(ValueError):
    """Not a token this simulator made, or made for another tenant, app or listing."""


@dataclass(frozen=True)
class PageState:
    """A listing in progress: its query, the tenant and app it belongs to, the `seq` of
    the last item served (the next page starts below it) and its expiry (simulated
    clock, seconds)."""

    listing: str  # alerts | incidents
    tenant: str
    app: str
    filter: str | None
    top: int
    count: bool
    expand: bool
    after_seq: int
    expires_at: float


def encode(state: PageState, key: bytes) -> str:
    body = base64.urlsafe_b64encode(json.dumps(asdict(state), separators=(",", ":"))
                                    .encode()).decode().rstrip("=")
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{body}.{mac}"


def decode(token: str, key: bytes, now: float) -> PageState:
    """The state a token carries; Invalid if it is not one, Expired if it no longer works."""
    body, _, mac = token.partition(".")
    try:
        raw = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        state = PageState(**raw)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"The $skiptoken is not valid: {exc}") from None
    good = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(good, mac):
        raise Expired("The $skiptoken is no longer valid.")
    if now > state.expires_at:
        raise Expired("The $skiptoken has expired.")
    return state
