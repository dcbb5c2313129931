"""Render pages with autoescaping; every value from a request or an alert is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from shared.web import error_text

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


_ENV.filters["when"] = _when
_ENV.filters["plain_error"] = error_text.summary

# pages carry no scripts and load nothing from elsewhere; forms post to us or to Entra
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def csp(form_targets: str = "'self'") -> str:
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            f"form-action {form_targets}; base-uri 'none'; frame-ancestors 'none'")


def render(template: str, **context: Any) -> str:
    return _ENV.get_template(template).render(**context)
