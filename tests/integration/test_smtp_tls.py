"""SMTP with STARTTLS and authentication, and with implicit TLS, against aiosmtpd."""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from shared.notify.transport import Permanent, SmtpTransport, Transient
from tests.integration.test_notify import Inbox, _port


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    ca_file = tmp_path_factory.mktemp("smtp-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


def _message() -> EmailMessage:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "t", "a@mssp.example", "b@x.example"
    message.set_content("hello")
    return message


def _login(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"mssp" and auth_data.password == b"s3cret"
    return AuthResult(success=ok)


def test_starttls_with_authentication(tls):
    context, ca_file = tls
    inbox, port = Inbox(), _port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=_login, auth_required=True)
    controller.start()
    try:
        SmtpTransport("127.0.0.1", port, "starttls", "mssp", "s3cret",
                      ca_bundle=ca_file).send(_message())
        assert len(inbox.messages) == 1
        with pytest.raises((Permanent, Transient)):  # a wrong password never sends
            SmtpTransport("127.0.0.1", port, "starttls", "mssp", "wrong", timeout=3,
                          ca_bundle=ca_file).send(_message())
        with pytest.raises(Exception):  # noqa: B017 - an untrusted certificate never sends
            SmtpTransport("127.0.0.1", port, "starttls", "mssp", "s3cret").send(_message())
        assert len(inbox.messages) == 1
    finally:
        controller.stop()


def test_implicit_tls(tls):
    context, ca_file = tls
    inbox, port = Inbox(), _port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    try:
        SmtpTransport("127.0.0.1", port, "tls", ca_bundle=ca_file).send(_message())
        assert len(inbox.messages) == 1
    finally:
        controller.stop()
