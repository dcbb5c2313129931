"""`make run ARGS=--smtp-catcher`: the app's real SMTP transport hands each email to a
local aiosmtpd catcher, which keeps it whole as an .eml file."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage

from devtools.smtp_catcher import SmtpCatcher
from shared.config import MailSettings
from shared.notify.transport import SmtpTransport
from tests.helpers import app_env


def test_the_catcher_keeps_each_email_whole(tmp_path):
    lines: list[str] = []
    catcher = SmtpCatcher(tmp_path / "mail", echo=lines.append).start()
    try:
        mail = MailSettings.from_env(app_env(**catcher.settings()))
        transport = SmtpTransport(mail.smtp_host, mail.smtp_port, mail.smtp_security)
        message = EmailMessage()
        message["From"], message["To"] = "hub@mssp.example", "soc@mssp.example"
        message["Subject"] = "High alert in Contoso: <script>"
        message.set_content("plain part")
        message.add_alternative("<p>html <b>part</b></p>", subtype="html")
        assert transport.send(message) == {}
        assert transport.send(message) == {}
    finally:
        catcher.stop()
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert [f.name for f in files] == ["000001.eml", "000002.eml"]
    kept = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert kept["Subject"] == "High alert in Contoso: <script>"
    assert kept.get_body(("html",)).get_content().strip() == "<p>html <b>part</b></p>"
    assert kept.get_body(("plain",)).get_content().strip() == "plain part"
    assert len(lines) == 2 and "soc@mssp.example" in lines[0] and "000001.eml" in lines[0]
