"""Mail transports behind one interface. SMTP now; Microsoft Graph sendMail comes next."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Protocol


class Permanent(RuntimeError):
    """The message can never be delivered as it is (refused address): record, no retry."""


class Transient(RuntimeError):
    """Try again later (server down, 4xx): the queue retries the event."""


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...


class SmtpTransport:
    def __init__(self, host: str, port: int, security: str, username: str = "",
                 password: str = "", timeout: float = 30, ca_bundle: str | None = None
                 ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self._password, self.timeout = username, password, timeout
        self.context = ssl.create_default_context(cafile=ca_bundle)

    def send(self, message: EmailMessage) -> None:
        try:
            if self.security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port,
                                                        timeout=self.timeout,
                                                        context=self.context)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.security == "starttls":
                    client.starttls(context=self.context)
                if self.username:
                    client.login(self.username, self._password)
                refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise Permanent(f"every recipient refused: {sorted(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            kind = Permanent if 500 <= exc.smtp_code < 600 else Transient
            raise kind(f"SMTP {exc.smtp_code}: {exc.smtp_error[:200]!r}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise Transient(f"SMTP server unreachable: {type(exc).__name__}") from None
        if refused:  # some recipients took it; the refused ones never will
            raise Permanent(f"refused recipients: {sorted(refused)}")


class RecordOnly:
    """No transport configured: the email is kept in MailOutbox, marked not sent."""

    def send(self, message: EmailMessage) -> None:
        raise Permanent("no mail transport configured (MAIL_TRANSPORT=none)")
