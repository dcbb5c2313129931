"""Render pages with autoescaping; every value from a request or an alert is escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from shared.alerts.view import PRODUCT_CHOICES
from shared.web import error_text

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


_ENV.filters["when"] = _when
_ENV.filters["plain_error"] = error_text.summary
_ENV.globals["alert_products"] = PRODUCT_CHOICES  # a rule form's product boxes

# an email shown in the outbox runs nothing and fetches nothing, whatever it carries (the
# frame is sandboxed without allow-scripts too; a srcdoc also inherits the page's CSP)
EMAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_HEAD = re.compile(r"<head(\s[^>]*)?>", re.IGNORECASE)


def framed_email(html: str) -> str:
    """An email's HTML for a sandboxed iframe's srcdoc, its own CSP first in its head."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{EMAIL_CSP}">'
    found = _HEAD.search(html)
    if found:
        return html[:found.end()] + meta + html[found.end():]
    return meta + html


_ENV.filters["framed_email"] = framed_email

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
