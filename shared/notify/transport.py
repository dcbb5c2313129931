"""Mail transports behind one interface: SMTP and Microsoft Graph sendMail."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import quote

import requests


class Permanent(RuntimeError):
    """The message can never be delivered as it is (refused address): record, no retry."""

    def __init__(self, message: str, refused: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.refused = refused or {}  # address -> the server's answer


class Transient(RuntimeError):
    """Try again later (server down, 4xx): the queue retries the event."""


class Transport(Protocol):
    def send(self, message: EmailMessage) -> dict[str, str]:
        """Hand the message over; the recipients the server refused (address -> reason).
        Raises Permanent when nobody can get it, Transient when it may work later."""
        ...


def _answer(code: int, text: bytes | str) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(text.split())[:200]}"


class SmtpTransport:
    def __init__(self, host: str, port: int, security: str, username: str = "",
                 password: str = "", timeout: float = 30, ca_bundle: str | None = None
                 ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self._password, self.timeout = username, password, timeout
        self.context = ssl.create_default_context(cafile=ca_bundle)

    def send(self, message: EmailMessage) -> dict[str, str]:
        client: smtplib.SMTP | None = None
        try:
            try:
                if self.security == "tls":
                    client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                              context=self.context)
                else:
                    client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    client.starttls(context=self.context)
                if self.username:
                    client.login(self.username, self._password)
                refused = client.send_message(message)
            except BaseException:
                if client is not None:
                    client.close()
                raise
        except smtplib.SMTPRecipientsRefused as exc:
            raise Permanent("every recipient refused", {
                a: _answer(code, text) for a, (code, text) in exc.recipients.items()}) from None
        except smtplib.SMTPNotSupportedError as exc:  # e.g. SMTPUTF8: no retry will help
            raise Permanent(f"not supported by the SMTP server: {exc}"[:200]) from None
        except smtplib.SMTPResponseException as exc:
            kind = Permanent if 500 <= exc.smtp_code < 600 else Transient
            raise kind(f"SMTP {_answer(exc.smtp_code, exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Transient(f"SMTP server unreachable: {type(exc).__name__}") from None
        # Accepted: from here nothing may raise, or the caller would send it again. QUIT
        # is a courtesy, bounded by a short timeout, and its failure changes nothing.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            if client.sock is not None:
                client.sock.settimeout(2)
            client.quit()
        client.close()
        return {a: _answer(code, text) for a, (code, text) in refused.items()}


class GraphTransport:
    """Microsoft Graph sendMail as the MSSP's mailbox (application permission Mail.Send in
    the MSSP's own tenant). Graph takes one body: the HTML part is sent."""

    def __init__(self, token: Callable[[], str], base_url: str, sender: str,
                 timeout: float = 30, ca_bundle: str | None = None) -> None:
        self.token, self.base_url, self.sender = token, base_url.rstrip("/"), sender
        self.timeout, self.verify = timeout, ca_bundle or True
        self.session = requests.Session()

    def send(self, message: EmailMessage) -> dict[str, str]:
        html = message.get_body(("html", "plain"))
        content = html.get_content() if html else ""
        kind = "HTML" if html and html.get_content_subtype() == "html" else "Text"

        def addresses(header: str) -> list[dict[str, Any]]:
            return [{"emailAddress": {"address": a.strip()}}
                    for a in str(message[header] or "").split(",") if a.strip()]

        body = {"message": {
            "subject": str(message["Subject"]), "body": {"contentType": kind,
                                                         "content": content},
            "toRecipients": addresses("To"), "replyTo": addresses("Reply-To"),
            # Graph assigns its own Message-ID; ours goes along for deduplication
            "internetMessageHeaders": [
                {"name": "X-MSSP-Hub-Event", "value": str(message["X-MSSP-Hub-Event"] or "-")},
                {"name": "X-MSSP-Hub-Message-ID", "value": str(message["Message-ID"])}]},
            "saveToSentItems": False}
        try:
            token = self.token()
        except Exception as exc:  # the app's own credential: retried, then poisoned
            raise Transient(f"no Graph token: {type(exc).__name__}") from None
        try:
            response = self.session.post(
                f"{self.base_url}/v1.0/users/{quote(self.sender)}/sendMail", json=body,
                headers={"Authorization": f"Bearer {token}"}, timeout=self.timeout,
                verify=self.verify)
        except requests.RequestException as exc:
            raise Transient(f"Graph unreachable: {type(exc).__name__}") from None
        if response.status_code == 202:
            return {}
        detail = f"Graph {response.status_code}: {response.text[:300]}"
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise Transient(detail)
        raise Permanent(detail)


class KeptLocally(Permanent):
    """Not sent, by design: no transport is configured, so the email is only kept (whole,
    in MailOutbox) for the portal's outbox to show as it would have arrived."""


class RecordOnly:
    """No transport configured: the email is kept in MailOutbox, marked kept locally."""

    def send(self, message: EmailMessage) -> dict[str, str]:
        raise KeptLocally("kept locally: no mail transport configured (MAIL_TRANSPORT=none)")
