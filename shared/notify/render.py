"""An alert email: multipart text and HTML from Jinja2 (HTML autoescaped), a subject
without line breaks or control characters, and the headers mail filters expect."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from shared.alerts.view import MDE_SOURCE, PRODUCTS
from shared.messages import AlertEvent
from shared.notify.rules import Rule

_DIR = Path(__file__).parent / "templates"
HTML_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(_DIR), autoescape=True,
                           undefined=jinja2.ChainableUndefined)
# text/plain has no markup to escape; its values are plain text in a plain-text part
TEXT_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(_DIR), autoescape=False,  # noqa: S701
                           undefined=jinja2.ChainableUndefined, keep_trailing_newline=True)
SUBJECT_MAX = 200


def one_line(text: Any, limit: int) -> str:
    """No CR, LF or other control/format characters (no header injection); capped."""
    cleaned = "".join(" " if unicodedata.category(c)[0] in "CZ" and c != " " else c
                      for c in str(text or ""))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "…"


def portal_link(alert_id: str, tenant_id: str) -> str:
    return (f"https://security.microsoft.com/alerts/{quote(alert_id, safe='')}"
            f"?tid={quote(tenant_id, safe='')}")


def hub_link(portal: str, alert_id: str, tenant_id: str) -> str:
    """The alert's page in the MSSP portal (`portal`: its base URL)."""
    return f"{portal}/tenants/{quote(tenant_id, safe='')}/alerts/{quote(alert_id, safe='')}"


def message_id(owner: str, key: str, sender: str) -> str:
    """The same Message-ID for every attempt at one email (rule or "ops", event id or
    digest batch or notice), so a repeat after a crash is the same message to mail clients."""
    digest = hashlib.sha256(f"{owner}\0{key}".encode()).hexdigest()[:40]
    domain = sender.rsplit("@", 1)[-1].strip(">") or "localhost"
    return f"<{digest}.mssp-hub@{domain}>"


def envelope(message: EmailMessage, subject: str, sender: str, recipients: list[str],
             reply_to: str, date: datetime, msgid: str) -> None:
    """The headers every email has; raises ValueError for an address a header cannot take
    (the caller records that email as failed, the others go on)."""
    message["Subject"] = one_line(subject, SUBJECT_MAX)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msgid
    message["Auto-Submitted"] = "auto-generated"


def fix_boundary(message: EmailMessage) -> None:
    """A multipart boundary from the Message-ID (itself from the rule's random id), not a
    fresh random one: a repeat is then byte for byte the same message."""
    seed = hashlib.sha256(f"boundary\0{message['Message-ID']}".encode()).hexdigest()
    message.set_boundary(f"=_mssp-hub_{seed[:32]}")


def render(event: AlertEvent, rule: Rule, recipients: list[str], sender: str,
           reply_to: str, mssp_name: str, date: datetime, msgid: str, portal: str = ""
           ) -> EmailMessage:
    """`portal`: the MSSP portal's base URL, when known: the email links to the alert's
    page there (with the rule's portal links)."""
    alert = event.alert
    org = event.tenant_name if rule.include_org_name else ""
    link = portal_link(str(alert.get("id", "")), event.tenant_id) \
        if rule.include_portal_link else ""
    hub = hub_link(portal, str(alert.get("id", "")), event.tenant_id) \
        if rule.include_portal_link and portal else ""
    # named when not Defender for Endpoint's (whose emails stay as they always were)
    product = str(alert.get("product") or "")
    product = "" if product == PRODUCTS[MDE_SOURCE] else product
    context = {"event": event, "alert": alert, "rule": rule, "org": org, "link": link,
               "hub": hub, "mssp_name": mssp_name, "product": product}
    prefix = f"[{alert.get('severity', 'Alert')}]"
    if org:
        prefix += f" {org}:"
    if event.change == "updated":
        prefix += " updated:"
    message = EmailMessage()
    envelope(message, f"{prefix} {alert.get('title', '')}", sender, recipients, reply_to,
             date, msgid)
    message["X-MSSP-Hub-Event"] = one_line(event.event_id, 300)
    message.set_content(TEXT_TEMPLATES.get_template("alert.txt").render(**context))
    message.add_alternative(HTML_TEMPLATES.get_template("alert.html").render(**context),
                            subtype="html")
    fix_boundary(message)
    return message
