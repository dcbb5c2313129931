"""The pull API's query: filters from the query string, and an opaque continuation token.

The token is the feed position plus a fingerprint of the filters it was issued for, so a
SIEM that polls with the token it was last given sees every alert version once, and a
token reused with other filters is refused rather than silently skipping alerts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from shared import timefmt
from shared.model import SEVERITIES, parse_tenant_id
from shared.siem.feed import HOUR, Feed, Filters, Page, Position
from shared.validation import ValidationError

STATUSES = ("Unknown", "New", "InProgress", "Resolved")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 200


@dataclass(frozen=True)
class PullQuery:
    filters: Filters
    limit: int
    position: Position | None  # None: start from `since` or the retention start
    ndjson: bool

    def fingerprint(self) -> str:
        data = json.dumps(asdict(self.filters), sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]


def _list(params: Mapping[str, str], name: str, allowed: tuple[str, ...] | None,
          errors: list[dict[str, str]]) -> tuple[str, ...]:
    raw = [v.strip() for v in params.get(name, "").split(",") if v.strip()]
    out = []
    for value in raw:
        if name == "tenant":
            try:
                out.append(parse_tenant_id(value))
            except ValueError:
                errors.append({"field": name, "message": "must be tenant ids (GUIDs)"})
                return ()
        elif allowed and value not in allowed:
            errors.append({"field": name, "message": f"each one of {', '.join(allowed)}"})
            return ()
        else:
            out.append(value)
    return tuple(sorted(set(out)))


def _time(params: Mapping[str, str], name: str, errors: list[dict[str, str]]) -> str:
    value = params.get(name, "").strip()
    if not value:
        return ""
    try:
        return timefmt.normalize(value)
    except ValueError:
        errors.append({"field": name, "message": "must be an ISO 8601 UTC time"})
        return ""


def parse_query(params: Mapping[str, str], accept: str = "") -> PullQuery:
    errors: list[dict[str, str]] = []
    unknown = set(params) - {"tenant", "severity", "status", "since", "until", "limit",
                             "format", "continuation", "code"}
    errors += [{"field": name, "message": "is not a known parameter"} for name in sorted(unknown)]
    filters = Filters(tenants=_list(params, "tenant", None, errors),
                      severities=_list(params, "severity", ("UnSpecified", *SEVERITIES),
                                       errors),
                      statuses=_list(params, "status", STATUSES, errors),
                      since=_time(params, "since", errors), until=_time(params, "until", errors))
    if filters.since and filters.until and filters.until < filters.since:
        errors.append({"field": "until", "message": "is before since"})
    limit = DEFAULT_LIMIT
    if params.get("limit"):
        try:
            limit = int(params["limit"])
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            errors.append({"field": "limit", "message": f"must be from 1 to {MAX_LIMIT}"})
    fmt = params.get("format", "")
    if fmt not in ("", "json", "ndjson"):
        errors.append({"field": "format", "message": "must be json or ndjson"})
    ndjson = fmt == "ndjson" or (not fmt and "application/x-ndjson" in accept)
    query = PullQuery(filters, limit, None, ndjson)
    token = params.get("continuation", "")
    if token and not errors:
        query = PullQuery(filters, limit, decode_token(token, query.fingerprint(), errors),
                          ndjson)
    if errors:
        raise ValidationError(errors)
    return query


def encode_token(position: Position, fingerprint: str) -> str:
    data = json.dumps({"v": 1, "b": position.bucket, "a": position.after, "f": fingerprint},
                      separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def decode_token(token: str, fingerprint: str, errors: list[dict[str, str]]
                 ) -> Position | None:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        datetime.strptime(data["b"], HOUR)
        if data.get("v") != 1 or not isinstance(data["a"], str) or len(data["a"]) > 1100:
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error):
        errors.append({"field": "continuation", "message": "is not a token this API issued"})
        return None
    if data.get("f") != fingerprint:
        errors.append({"field": "continuation",
                       "message": "was issued for other filters; repeat the same filters"})
        return None
    return Position(data["b"], data["a"])


def item(event: Mapping[str, Any]) -> dict[str, Any]:
    """One alert version as the API returns it: the Defender alert plus its tenant."""
    return {"event_id": event["event_id"], "tenant_id": event["tenant"],
            "tenant_name": event.get("tenant_name"), "change": event.get("change"),
            "changed": event.get("changed") or {}, "version": event.get("version"),
            "feed_time": event.get("feed_time"),
            "alert_complete": event.get("alert_complete", False), "alert": event["alert"]}


def pull(feed: Feed, query: PullQuery) -> tuple[list[dict[str, Any]], str, bool]:
    """(items, continuation token, more waiting)."""
    since = timefmt.to_datetime(query.filters.since) if query.filters.since else None
    position = query.position or feed.start(since)
    page: Page = feed.read(position, query.limit, query.filters)
    return ([item(e) for e in page.events], encode_token(page.position, query.fingerprint()),
            page.more)
